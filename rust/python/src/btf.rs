//! Python face of `pyvcore_core::btf`: `KernelImage` (symbols, banner, BTF layouts of
//! a vmlinux, optionally with a module's split BTF).  Layouts cross as plain
//! dicts so that `pyvcore.layout` can use them like gdb's own types.

use std::path::PathBuf;

use pyo3::exceptions::{PyKeyError, PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use pyvcore_core::btf::{ImageError, KernelImage, Layouts, StructLayout};

fn to_py(e: ImageError) -> PyErr {
    match e {
        ImageError::Io(_) => PyOSError::new_err(e.to_string()),
        ImageError::NoSuchType(_) => PyKeyError::new_err(e.to_string()),
        other => PyValueError::new_err(other.to_string()),
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
/// ValueError if it is not a ppc64 ELF.  Layout lookups raise KeyError for an
/// unknown type and ValueError when the image has no BTF.
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
            (None, Some(e)) => Err(PyValueError::new_err(e.clone())),
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
                let layouts = match image.btf {
                    Some(_) => Some(image.layouts()),
                    None => None,
                };
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

    /// Kernel release ("6.12.95+deb12-powerpc64le"), or None.
    #[getter]
    fn release(&self) -> Option<String> {
        self.image.release()
    }

    /// Address of a symbol, or None.
    fn symbol(&self, name: &str) -> Option<u64> {
        self.image.symbol(name).map(|s| s.address)
    }

    /// Full symbol record: {"address", "size", "section", "local"} or None.
    fn symbol_info<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(s) = self.image.symbol(name) else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item("address", s.address)?;
        d.set_item("size", s.size)?;
        d.set_item("section", &s.section)?;
        d.set_item("local", s.local)?;
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
    m.add_function(wrap_pyfunction!(module_symbols, m)?)?;
    Ok(())
}
