//! Host tensors: typed element vectors, or a zero-copy view into a memory-mapped file.

use std::sync::Arc;

use half::{bf16, f16};

use super::derived::Derived;
use super::{DType, Element, Shape};
use crate::error::{Error, Result};

/// An owned, typed vector of elements on the host.
#[derive(Clone, Debug, PartialEq)]
pub enum HostVec {
    /// f32 elements.
    F32(Vec<f32>),
    /// f16 elements.
    F16(Vec<f16>),
    /// bf16 elements.
    BF16(Vec<bf16>),
    /// i64 elements.
    I64(Vec<i64>),
    /// u32 elements.
    U32(Vec<u32>),
}

/// Applies `$body` to the typed vector inside a [`HostVec`], binding it as `$v`.
#[macro_export]
#[doc(hidden)]
macro_rules! with_host_vec {
    ($hv:expr, $v:ident => $body:expr) => {
        match $hv {
            $crate::tensor::HostVec::F32($v) => $body,
            $crate::tensor::HostVec::F16($v) => $body,
            $crate::tensor::HostVec::BF16($v) => $body,
            $crate::tensor::HostVec::I64($v) => $body,
            $crate::tensor::HostVec::U32($v) => $body,
        }
    };
}

impl HostVec {
    /// A zero-filled vector of `n` elements.
    pub fn zeros(dtype: DType, n: usize) -> HostVec {
        match dtype {
            DType::F32 => HostVec::F32(vec![0.0; n]),
            DType::F16 => HostVec::F16(vec![f16::ZERO; n]),
            DType::BF16 => HostVec::BF16(vec![bf16::ZERO; n]),
            DType::I64 => HostVec::I64(vec![0; n]),
            DType::U32 => HostVec::U32(vec![0; n]),
        }
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            HostVec::F32(_) => DType::F32,
            HostVec::F16(_) => DType::F16,
            HostVec::BF16(_) => DType::BF16,
            HostVec::I64(_) => DType::I64,
            HostVec::U32(_) => DType::U32,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        with_host_vec!(self, v => v.len())
    }

    /// Whether it holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        with_host_vec!(self, v => bytemuck::cast_slice(v))
    }

    /// The raw bytes, mutable.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        with_host_vec!(self, v => bytemuck::cast_slice_mut(v))
    }

    /// The elements as `T`, if the dtype matches.
    pub fn as_slice<T: Element>(&self) -> Option<&[T]> {
        if self.dtype() != T::DTYPE {
            return None;
        }
        Some(bytemuck::cast_slice(self.as_bytes()))
    }

    /// The elements as mutable `T`, if the dtype matches.
    pub fn as_mut_slice<T: Element>(&mut self) -> Option<&mut [T]> {
        if self.dtype() != T::DTYPE {
            return None;
        }
        Some(bytemuck::cast_slice_mut(self.as_bytes_mut()))
    }

    /// Builds a vector of `dtype` from raw little-endian bytes (copying; any alignment).
    pub fn from_bytes(dtype: DType, bytes: &[u8]) -> Result<HostVec> {
        if bytes.len() % dtype.size() != 0 {
            return Err(Error::arg(
                "HostVec::from_bytes",
                format!("{} bytes is not a whole number of {dtype} elements", bytes.len()),
            ));
        }
        let mut hv = HostVec::zeros(dtype, bytes.len() / dtype.size());
        hv.as_bytes_mut().copy_from_slice(bytes);
        Ok(hv)
    }
}

/// Where a tensor's bytes live.
#[derive(Debug)]
enum Storage {
    Host(HostVec),
    /// A range of a memory-mapped file, checked at creation to be aligned for the dtype.
    Mapped {
        map: Arc<memmap2::Mmap>,
        start: usize,
        len: usize,
    },
}

/// An immutable n-dimensional array on the host. Cloning is cheap (the data is shared).
#[derive(Clone)]
pub struct Tensor {
    dtype: DType,
    shape: Shape,
    storage: Arc<Storage>,
    /// Forms derived from the data (shared by clones and reshapes, which share the data).
    derived: Arc<Derived>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({} {})", self.dtype, self.shape)
    }
}

impl Tensor {
    /// A tensor from a vector of elements; `Err` if the element count does not match the shape.
    pub fn from_vec<T: Element>(data: Vec<T>, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        if data.len() != shape.numel() {
            return Err(Error::arg(
                "Tensor::from_vec",
                format!("{} elements given for shape {shape} ({} elements)", data.len(), shape.numel()),
            ));
        }
        let bytes: Vec<T> = data;
        let hv = host_vec_from_typed(bytes);
        Ok(Tensor { dtype: T::DTYPE, shape, storage: Arc::new(Storage::Host(hv)), derived: Default::default() })
    }

    /// A tensor from a typed host vector; `Err` if the element count does not match the shape.
    pub fn from_host_vec(data: HostVec, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        if data.len() != shape.numel() {
            return Err(Error::arg(
                "Tensor::from_host_vec",
                format!("{} elements given for shape {shape} ({} elements)", data.len(), shape.numel()),
            ));
        }
        Ok(Tensor { dtype: data.dtype(), shape, storage: Arc::new(Storage::Host(data)), derived: Default::default() })
    }

    /// A zero-filled tensor.
    pub fn zeros(dtype: DType, shape: impl Into<Shape>) -> Tensor {
        let shape = shape.into();
        Tensor {
            dtype,
            storage: Arc::new(Storage::Host(HostVec::zeros(dtype, shape.numel()))),
            shape,
            derived: Default::default(),
        }
    }

    /// A view of `len` bytes at `start` of a mapped file. Copies instead when the range is not aligned for
    /// the dtype (safetensors does not promise alignment), so typed access always works.
    pub(crate) fn from_mapped(
        map: Arc<memmap2::Mmap>,
        start: usize,
        len: usize,
        dtype: DType,
        shape: Shape,
    ) -> Result<Tensor> {
        let bytes = map
            .get(start..start + len)
            .ok_or_else(|| Error::arg("Tensor::from_mapped", "range outside the mapped file"))?;
        if len != shape.numel() * dtype.size() {
            return Err(Error::arg(
                "Tensor::from_mapped",
                format!("{len} bytes for shape {shape} of {dtype} (needs {})", shape.numel() * dtype.size()),
            ));
        }
        let storage = if (bytes.as_ptr() as usize) % dtype.size() == 0 {
            Storage::Mapped { map, start, len }
        } else {
            Storage::Host(HostVec::from_bytes(dtype, bytes)?)
        };
        Ok(Tensor { dtype, shape, storage: Arc::new(storage), derived: Default::default() })
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The shape.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.numel()
    }

    /// Whether the data is a zero-copy view of a memory-mapped file.
    pub fn is_mapped(&self) -> bool {
        matches!(*self.storage, Storage::Mapped { .. })
    }

    /// The raw little-endian bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &*self.storage {
            Storage::Host(hv) => hv.as_bytes(),
            Storage::Mapped { map, start, len } => &map[*start..*start + *len],
        }
    }

    /// The elements as `T`; `Err` when the dtype is not `T`'s.
    pub fn as_slice<T: Element>(&self) -> Result<&[T]> {
        if self.dtype != T::DTYPE {
            return Err(Error::DTypeMismatch {
                op: "Tensor::as_slice",
                expected: T::DTYPE.to_string(),
                got: self.dtype,
            });
        }
        // Alignment was checked (or the data copied) when the tensor was made.
        Ok(bytemuck::cast_slice(self.as_bytes()))
    }

    /// All elements converted to f32 (a copy).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match self.dtype {
            DType::F32 => self.as_slice::<f32>().map(|s| s.to_vec()).unwrap_or_default(),
            DType::F16 => self.as_slice::<f16>().map(|s| s.iter().map(|x| x.to_f32()).collect()).unwrap_or_default(),
            DType::BF16 => self.as_slice::<bf16>().map(|s| s.iter().map(|x| x.to_f32()).collect()).unwrap_or_default(),
            DType::I64 => self.as_slice::<i64>().map(|s| s.iter().map(|&x| x as f32).collect()).unwrap_or_default(),
            DType::U32 => self.as_slice::<u32>().map(|s| s.iter().map(|&x| x as f32).collect()).unwrap_or_default(),
        }
    }

    /// A copy of the data as a typed host vector.
    pub fn to_host_vec(&self) -> HostVec {
        match &*self.storage {
            Storage::Host(hv) => hv.clone(),
            Storage::Mapped { .. } => {
                HostVec::from_bytes(self.dtype, self.as_bytes()).expect("sizes checked at creation")
            }
        }
    }

    /// Converts to another float dtype (round to nearest even); integers convert by value.
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype {
            return Ok(self.clone());
        }
        let hv = match (self.dtype, dtype) {
            (DType::I64, DType::U32) => HostVec::U32(
                self.as_slice::<i64>()?
                    .iter()
                    .map(|&x| {
                        u32::try_from(x).map_err(|_| Error::arg("Tensor::to_dtype", format!("id {x} does not fit u32")))
                    })
                    .collect::<Result<_>>()?,
            ),
            (DType::U32, DType::I64) => HostVec::I64(self.as_slice::<u32>()?.iter().map(|&x| x as i64).collect()),
            (_, to) if to.is_float() => {
                let v = self.to_f32_vec();
                match to {
                    DType::F32 => HostVec::F32(v),
                    DType::F16 => HostVec::F16(v.iter().map(|&x| f16::from_f32(x)).collect()),
                    _ => HostVec::BF16(v.iter().map(|&x| bf16::from_f32(x)).collect()),
                }
            }
            (from, to) => return Err(Error::arg("Tensor::to_dtype", format!("cannot convert {from} to {to}"))),
        };
        Tensor::from_host_vec(hv, self.shape.clone())
    }

    /// `make()`, computed once per `key` and kept while this tensor's data lives (its clones and reshapes share
    /// it): for layouts that a backend derives from a constant, such as packed weights. The key tells apart the
    /// forms one maker derives (a view, a shape); keys of different types never match.
    pub(crate) fn derived<K, T>(&self, key: K, make: impl FnOnce() -> T) -> std::sync::Arc<T>
    where
        K: PartialEq + Send + Sync + 'static,
        T: Send + Sync + 'static,
    {
        self.derived.get_or_make(key, make)
    }

    /// The same data with another shape of the same element count.
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        if shape.numel() != self.numel() {
            return Err(Error::shape_hint("Tensor::reshape", &self.shape, &shape, "element counts differ"));
        }
        Ok(Tensor { dtype: self.dtype, shape, storage: self.storage.clone(), derived: self.derived.clone() })
    }
}

fn host_vec_from_typed<T: Element>(v: Vec<T>) -> HostVec {
    // Element is only implemented for the five types below, so one of these casts matches.
    let any: Box<dyn std::any::Any> = Box::new(v);
    let any = match any.downcast::<Vec<f32>>() {
        Ok(v) => return HostVec::F32(*v),
        Err(a) => a,
    };
    let any = match any.downcast::<Vec<f16>>() {
        Ok(v) => return HostVec::F16(*v),
        Err(a) => a,
    };
    let any = match any.downcast::<Vec<bf16>>() {
        Ok(v) => return HostVec::BF16(*v),
        Err(a) => a,
    };
    let any = match any.downcast::<Vec<i64>>() {
        Ok(v) => return HostVec::I64(*v),
        Err(a) => a,
    };
    match any.downcast::<Vec<u32>>() {
        Ok(v) => HostVec::U32(*v),
        Err(_) => unreachable!("Element is implemented for f32, f16, bf16, i64 and u32 only"),
    }
}
