//! Trace replay from Python: `check_trace_file`, `check_trace_stdin` and
//! `check_trace_text` stream a JSONL trace through the checker without the
//! GIL and return a `CoreTraceReport`.

use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyKeyboardInterrupt, PyOSError};
use pyo3::prelude::*;

use pyvcore_core::image::io_reason;
use pyvcore_core::trace::{check_reader, TraceOptions, TraceReport};

use crate::snapshot::parse_variant;
use crate::violation::PyViolation;

/// (line, column, key, reason, detail) of an unusable trace line: detail is
/// ``key `K`: reason`` without the place (the caller knows the file).
type ErrorTuple = (Option<usize>, Option<usize>, String, String, String);

/// The result of replaying a trace (`pyvcore.checker.TraceReport` wraps it).
#[pyclass(module = "pyvcore._core", name = "CoreTraceReport", frozen)]
pub struct PyTraceReport {
    #[pyo3(get)]
    snapshots: usize,
    #[pyo3(get)]
    violations: Vec<Py<PyViolation>>,
    #[pyo3(get)]
    total_violations: usize,
    /// [(invariant, count, first Violation)], by invariant number.
    #[pyo3(get)]
    groups: Vec<(u32, usize, Py<PyViolation>)>,
    #[pyo3(get)]
    not_judged: usize,
    #[pyo3(get)]
    first_not_judged: Option<usize>,
    /// Stops pv-watch could not read (`{"stop": LABEL, "error": MESSAGE}` lines).
    #[pyo3(get)]
    unread: usize,
    /// (line, stop label, error) of the first of them, or None.
    #[pyo3(get)]
    first_unread: Option<(usize, String, String)>,
    /// (line, column, key, reason, detail) of the unusable line, or None.
    #[pyo3(get)]
    error: Option<ErrorTuple>,
    #[pyo3(get)]
    exit_code: i32,
    #[pyo3(get)]
    verdict: &'static str,
}

impl PyTraceReport {
    fn from_core(py: Python<'_>, r: &TraceReport) -> PyResult<Self> {
        let conv = |tv: &pyvcore_core::trace::TraceViolation| {
            Py::new(
                py,
                PyViolation::from_core(py, &tv.violation, Some(tv.line), tv.stop.as_deref())?,
            )
        };
        Ok(PyTraceReport {
            snapshots: r.snapshots,
            violations: r.violations.iter().map(conv).collect::<PyResult<_>>()?,
            total_violations: r.total_violations,
            groups: r
                .groups
                .iter()
                .map(|g| Ok((g.invariant, g.count, conv(&g.first)?)))
                .collect::<PyResult<_>>()?,
            not_judged: r.not_judged,
            first_not_judged: r.first_not_judged,
            unread: r.unread,
            first_unread: r
                .first_unread
                .as_ref()
                .map(|(line, u)| (*line, u.stop.clone(), u.error.clone())),
            error: r
                .error
                .as_ref()
                .map(|e| (e.line, e.column, e.key.clone(), e.message.clone(), e.detail())),
            exit_code: r.exit_code(),
            verdict: r.verdict(),
        })
    }
}

fn options(
    variant: Option<&str>,
    same_vm: bool,
    max_line_bytes: usize,
    keep: usize,
) -> PyResult<TraceOptions> {
    Ok(TraceOptions {
        variant: parse_variant(variant)?,
        same_vm,
        max_line_bytes,
        keep,
    })
}

/// Replay from a byte stream without the GIL, checking for Ctrl-C between
/// batches.
/// The first read error of an [`ErrorTap`]: (errno, C's wording of it).
type ReadError = Arc<Mutex<Option<(Option<i32>, String)>>>;

/// A reader that remembers the first read error (errno, C's wording), so that a file that
/// fails midway (EIO) is an OSError, as one that cannot be opened, not an unusable line.
struct ErrorTap<R> {
    inner: R,
    error: ReadError,
}

impl<R: Read> Read for ErrorTap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            if e.kind() != io::ErrorKind::Interrupted {
                let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert((e.raw_os_error(), io_reason(e)));
            }
        })
    }
}

/// Replay `source` through an [`ErrorTap`]; a read error is OSError(errno, reason, path).
fn replay_tapped<R: Read + Send>(
    py: Python<'_>,
    source: R,
    path: &Path,
    opts: &TraceOptions,
) -> PyResult<PyTraceReport> {
    let error: ReadError = Arc::new(Mutex::new(None));
    let tap = ErrorTap {
        inner: source,
        error: Arc::clone(&error),
    };
    let report = replay(py, BufReader::with_capacity(1 << 16, tap), opts)?;
    let failed = error.lock().unwrap_or_else(|p| p.into_inner()).take();
    match failed {
        Some((Some(n), reason)) => Err(PyOSError::new_err((n, reason, path.to_path_buf()))),
        Some((None, reason)) => Err(PyOSError::new_err(format!(
            "cannot read {}: {reason}",
            path.display()
        ))),
        None => Ok(report),
    }
}

fn replay<R: io::BufRead + Send>(py: Python<'_>, reader: R, opts: &TraceOptions) -> PyResult<PyTraceReport> {
    let (report, interrupted) = py.detach(|| {
        check_reader(reader, opts, &mut || {
            Python::attach(|py| py.check_signals().is_err())
        })
    });
    if interrupted {
        return Err(PyKeyboardInterrupt::new_err("interrupted"));
    }
    PyTraceReport::from_core(py, &report)
}

/// Replay a JSONL trace file (streamed).
#[pyfunction]
#[pyo3(signature = (path, variant=None, same_vm=false, max_line_bytes=64 << 20, keep=1000))]
fn check_trace_file(
    py: Python<'_>,
    path: PathBuf,
    variant: Option<&str>,
    same_vm: bool,
    max_line_bytes: usize,
    keep: usize,
) -> PyResult<PyTraceReport> {
    let opts = options(variant, same_vm, max_line_bytes, keep)?;
    // OSError(errno, reason, path): Python's FileNotFoundError etc., with C's wording.
    let file = std::fs::File::open(&path).map_err(|e| match e.raw_os_error() {
        Some(n) => PyOSError::new_err((n, io_reason(&e), path.clone())),
        None => PyOSError::new_err(format!("cannot read {}: {}", path.display(), io_reason(&e))),
    })?;
    replay_tapped(py, file, &path, &opts)
}

/// Replay a JSONL trace from standard input (file descriptor 0), streamed.
#[pyfunction]
#[pyo3(signature = (variant=None, same_vm=false, max_line_bytes=64 << 20, keep=1000))]
fn check_trace_stdin(
    py: Python<'_>,
    variant: Option<&str>,
    same_vm: bool,
    max_line_bytes: usize,
    keep: usize,
) -> PyResult<PyTraceReport> {
    let opts = options(variant, same_vm, max_line_bytes, keep)?;
    replay_tapped(py, io::stdin(), Path::new("-"), &opts)
}

/// Replay a JSONL trace held in a string.
#[pyfunction]
#[pyo3(signature = (text, variant=None, same_vm=false, max_line_bytes=64 << 20, keep=1000))]
fn check_trace_text(
    py: Python<'_>,
    text: &str,
    variant: Option<&str>,
    same_vm: bool,
    max_line_bytes: usize,
    keep: usize,
) -> PyResult<PyTraceReport> {
    let opts = options(variant, same_vm, max_line_bytes, keep)?;
    replay(py, text.as_bytes(), &opts)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTraceReport>()?;
    m.add_function(wrap_pyfunction!(check_trace_file, m)?)?;
    m.add_function(wrap_pyfunction!(check_trace_stdin, m)?)?;
    m.add_function(wrap_pyfunction!(check_trace_text, m)?)?;
    Ok(())
}
