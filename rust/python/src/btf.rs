//! Python face of `pyvcore_core::{image, btf}`: `KernelImage` (symbols with their
//! ELFv2 local entry, sections, `.modinfo`, banner, BTF layouts of a vmlinux,
//! optionally with a module's split BTF).  Layouts cross as plain dicts so that
//! `pyvcore.layout` can use them like gdb's own types.

use std::path::PathBuf;

use pyo3::exceptions::{PyKeyError, PyOSError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use pyvcore_core::btf::{ImageError, KernelImage, Layouts, StructLayout, Symbol};

/// The exception class is named `pyvcore.ImageError` (`__module__` "pyvcore"), the name
/// users import it by, so tracebacks and reprs read `pyvcore.ImageError`.
mod exception {
    use pyo3::exceptions::PyValueError;

    pyo3::create_exception!(
        pyvcore,
        ImageError,
        PyValueError,
        "A kernel image (vmlinux or .ko) that is not what it claims: not ELF, not ppc64, \
     corrupt .BTF (cycles, absurd depths, overflowing sizes), a symbol or offset \
     outside the image.  One line, without the path (the caller knows it)."
    );
}
use exception::ImageError as PyImageError;

/// Io errors are `OSError(errno, reason, path)` (Python prints the path once);
/// unknown types are `KeyError`; everything else is `ImageError`.
fn to_py(e: ImageError) -> PyErr {
    match e {
        ImageError::Io { path, reason, errno } => match errno {
            Some(n) => PyOSError::new_err((n, reason, path)),
            None => PyOSError::new_err(format!("cannot read {path}: {reason}")),
        },
        ImageError::NoSuchType(_) => PyKeyError::new_err(e.to_string()),
        other => PyImageError::new_err(other.to_string()),
    }
}

/// One ELF symbol (`KernelImage.symbol(name)`).
#[pyclass(module = "pyvcore._core", name = "Symbol", frozen, eq)]
#[derive(PartialEq)]
pub struct PySymbol {
    /// Symbol name.
    #[pyo3(get)]
    name: String,
    /// `st_value`: an address in vmlinux, an offset into `section` in a module.
    #[pyo3(get)]
    address: u64,
    /// `st_size` in bytes (0 for assembly labels).
    #[pyo3(get)]
    size: u64,
    /// ELFv2 local entry offset in bytes from `st_other` (0 when none): where
    /// callers sharing the TOC enter, so where a breakpoint must go.
    #[pyo3(get)]
    local_entry: u64,
    /// Name of the section that holds the symbol (".text", ".data", ...).
    #[pyo3(get)]
    section: String,
    /// True for STB_LOCAL.
    #[pyo3(get)]
    local: bool,
}

impl PySymbol {
    fn new(name: &str, s: &Symbol) -> Self {
        PySymbol {
            name: name.to_string(),
            address: s.address,
            size: s.size,
            local_entry: s.local_entry,
            section: s.section.clone(),
            local: s.local,
        }
    }
}

#[pymethods]
impl PySymbol {
    fn __repr__(&self) -> String {
        format!(
            "Symbol({:?}, address={:#x}, size={}, local_entry={}, section={:?})",
            self.name, self.address, self.size, self.local_entry, self.section
        )
    }
}

fn layout_dict<'py>(py: Python<'py>, l: &StructLayout) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", &l.name)?;
    d.set_item("is_union", l.is_union)?;
    d.set_item("size", l.size)?;
    let members = PyList::empty(py);
    for m in &l.members {
        let md = PyDict::new(py);
        md.set_item("name", &m.name)?;
        md.set_item("offset", m.offset)?;
        md.set_item("bit_offset", m.bit_offset)?;
        md.set_item("bitfield_size", m.bitfield_size)?;
        md.set_item("size", m.size)?;
        md.set_item("type", &m.type_name)?;
        md.set_item("kind", m.kind.as_str())?;
        md.set_item("signed", m.signed)?;
        md.set_item("type_id", m.type_id)?;
        md.set_item("array_len", m.array_len)?;
        md.set_item("elem_size", m.elem_size)?;
        md.set_item("inner_kind", m.inner_kind.map(|k| k.as_str()))?;
        members.append(md)?;
    }
    d.set_item("members", members)?;
    Ok(d)
}

/// A ppc64 kernel ELF image: symbols from its symtab, layouts from its .BTF.
///
/// `KernelImage(path)` raises OSError if the file cannot be read and
/// ImageError (a ValueError) if it is not a ppc64 ELF.  Layout lookups raise
/// KeyError for an unknown type and ImageError when the image has no BTF or a
/// corrupt one.
#[pyclass(module = "pyvcore._core", name = "KernelImage", frozen)]
pub struct PyKernelImage {
    path: PathBuf,
    image: KernelImage,
    layouts: Option<Layouts>,
    btf_error: Option<String>,
    module_layouts: std::sync::Mutex<Vec<(String, Layouts)>>,
}

impl PyKernelImage {
    fn layouts(&self) -> PyResult<&Layouts> {
        match (&self.layouts, &self.btf_error) {
            (Some(l), _) => Ok(l),
            (None, Some(e)) => Err(PyImageError::new_err(e.clone())),
            (None, None) => Err(to_py(ImageError::NoBtf)),
        }
    }
}

#[pymethods]
impl PyKernelImage {
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let (image, layouts) = py
            .detach(|| {
                let image = KernelImage::open(&path)?;
                let layouts = image.btf.as_ref().map(|_| image.layouts());
                Ok::<_, ImageError>((image, layouts))
            })
            .map_err(to_py)?;
        let (layouts, btf_error) = match layouts {
            Some(Ok(l)) => (Some(l), None),
            Some(Err(e)) => (None, Some(e.to_string())),
            None => (None, None),
        };
        Ok(PyKernelImage {
            path,
            image,
            layouts,
            btf_error,
            module_layouts: Default::default(),
        })
    }

    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// ELF architecture name (always "PowerPc64": anything else is refused).
    #[getter]
    fn machine(&self) -> &str {
        &self.image.machine
    }

    #[getter]
    fn little_endian(&self) -> bool {
        self.image.little_endian
    }

    /// True when the image has a parseable .BTF section.
    #[getter]
    fn has_btf(&self) -> bool {
        self.layouts.is_some()
    }

    /// Why the image's .BTF section could not be read ("corrupt .BTF section:
    /// ..."), or None when it has none or it is fine.
    #[getter]
    fn btf_error(&self) -> Option<String> {
        self.btf_error.clone()
    }

    /// True for a relocatable ELF (a module), whose symbols are section-relative.
    #[getter]
    fn relocatable(&self) -> bool {
        self.image.relocatable
    }

    /// The `.modinfo` key=value pairs of a module ({} for vmlinux).
    #[getter]
    fn modinfo(&self) -> Vec<(String, String)> {
        self.image.modinfo.clone()
    }

    /// Names of the image's sections, in file order.
    #[getter]
    fn section_names(&self) -> Vec<String> {
        self.image.sections.iter().map(|s| s.name.clone()).collect()
    }

    /// True when the image carries DWARF (.debug_info).
    #[getter]
    fn has_debug_info(&self) -> bool {
        self.image.has_debug_info
    }

    /// `linux_banner` text, or None.
    #[getter]
    fn banner(&self) -> Option<String> {
        self.image.banner.clone()
    }

    /// The GNU build-id note in lowercase hex ("e047...aecc"), or None: a kernel and
    /// the debug file split from it carry the same one.
    #[getter]
    fn build_id(&self) -> Option<String> {
        self.image.build_id.clone()
    }

    /// Kernel release ("6.12.95+deb12-powerpc64le"), or None.
    #[getter]
    fn release(&self) -> Option<String> {
        self.image.release()
    }

    /// The symbol named `name`, or None.
    fn symbol(&self, name: &str) -> Option<PySymbol> {
        self.image.symbol(name).map(|s| PySymbol::new(name, s))
    }

    /// Address (`st_value`) of a symbol, or None.
    fn address(&self, name: &str) -> Option<u64> {
        self.image.symbol(name).map(|s| s.address)
    }

    /// File offset of the `length` bytes at `symbol + offset` (bytes).
    /// ImageError when the symbol is unknown or the range leaves its section
    /// (or the symbol, when it has a size).
    #[pyo3(signature = (symbol, offset=0, length=4))]
    fn file_offset(&self, symbol: &str, offset: u64, length: u64) -> PyResult<u64> {
        self.image.file_offset(symbol, offset, length).map_err(to_py)
    }

    /// Relocation targets (section offsets) within `[start, start+length)` of a
    /// module's `section`; [] for vmlinux.
    fn relocations_in(&self, section: &str, start: u64, length: u64) -> Vec<u64> {
        self.image.relocations_in(section, start, length)
    }

    /// Full symbol record: {"address", "size", "section", "local", "local_entry"} or None.
    fn symbol_info<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(s) = self.image.symbol(name) else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item("address", s.address)?;
        d.set_item("size", s.size)?;
        d.set_item("section", &s.section)?;
        d.set_item("local", s.local)?;
        d.set_item("local_entry", s.local_entry)?;
        Ok(Some(d))
    }

    /// Layout of a named struct/union as a dict (see `pyvcore.layout`).
    /// Looks in vmlinux first, then in modules added with add_module_btf.
    fn struct_layout<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
        let base = self.layouts()?;
        match base.struct_layout(name) {
            Ok(l) => layout_dict(py, &l),
            // Unknown to vmlinux, or only forward-declared there: a module's
            // split BTF may define it (e.g. kvm-hv's struct kvm_resize_hpt).
            Err(err @ (ImageError::NoSuchType(_) | ImageError::NotAStruct(_))) => {
                let mods = self.module_layouts.lock().unwrap();
                for (_, ml) in mods.iter() {
                    if let Ok(l) = ml.struct_layout(name) {
                        return layout_dict(py, &l);
                    }
                }
                Err(to_py(err))
            }
            Err(e) => Err(to_py(e)),
        }
    }

    /// Layout of a struct/union by BTF id (for anonymous members).  `module`
    /// names the split BTF the id belongs to (None = vmlinux).
    #[pyo3(signature = (type_id, module=None))]
    fn layout_by_id<'py>(
        &self,
        py: Python<'py>,
        type_id: u32,
        module: Option<&str>,
    ) -> PyResult<Bound<'py, PyDict>> {
        match module {
            None => layout_dict(py, &self.layouts()?.layout_by_id(type_id).map_err(to_py)?),
            Some(m) => {
                let mods = self.module_layouts.lock().unwrap();
                let (_, ml) = mods
                    .iter()
                    .find(|(n, _)| n == m)
                    .ok_or_else(|| PyKeyError::new_err(format!("module {m} has no BTF loaded")))?;
                layout_dict(py, &ml.layout_by_id(type_id).map_err(to_py)?)
            }
        }
    }

    /// True if BTF names a type (struct, union, typedef, enum...) with this name.
    fn has_type(&self, name: &str) -> bool {
        self.layouts.as_ref().map(|l| l.has_type(name)).unwrap_or(false)
    }

    /// Add the split BTF of a module from its (decompressed) ELF bytes.
    /// Returns False when the module has no .BTF section.
    fn add_module_btf(&self, py: Python<'_>, name: String, elf: &Bound<'_, PyBytes>) -> PyResult<bool> {
        let bytes = elf.as_bytes().to_vec();
        let base = self.layouts()?;
        let parsed = py.detach(|| -> Result<Option<Layouts>, ImageError> {
            let module = KernelImage::parse(&bytes)?;
            match module.btf {
                Some(split) => Ok(Some(base.with_split(&split)?)),
                None => Ok(None),
            }
        });
        match parsed.map_err(to_py)? {
            Some(l) => {
                let mut mods = self.module_layouts.lock().unwrap();
                mods.retain(|(n, _)| n != &name);
                mods.push((name, l));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "KernelImage({:?}, release={:?}, btf={})",
            self.path.display().to_string(),
            self.image.release(),
            self.layouts.is_some()
        )
    }
}

/// Symbols of a module ELF (.ko, decompressed): {name: (section, offset)}
/// for functions and labels, so a caller can add the module's load address.
#[pyfunction]
fn module_symbols<'py>(py: Python<'py>, elf: &Bound<'py, PyBytes>) -> PyResult<Bound<'py, PyDict>> {
    let bytes = elf.as_bytes().to_vec();
    let image = py.detach(|| KernelImage::parse(&bytes)).map_err(to_py)?;
    let d = PyDict::new(py);
    for (name, s) in &image.symbols {
        if !s.section.is_empty() {
            d.set_item(name, (&s.section, s.address))?;
        }
    }
    Ok(d)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyKernelImage>()?;
    m.add_class::<PySymbol>()?;
    m.add("ImageError", m.py().get_type::<PyImageError>())?;
    m.add_function(wrap_pyfunction!(module_symbols, m)?)?;
    Ok(())
}
