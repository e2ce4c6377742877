//! Embedding: gathers rows of a table by id. Ids are checked before anything is written.

use rayon::prelude::*;

use super::buffer::{typed, CHUNK};
use super::layout::{by_size, raw_in, raw_out};
use super::CpuBuffer;
use crate::error::{Error, Result};
use crate::graph::TensorDesc;
use crate::tensor::{DType, HostVec};

/// out[i, :] = table[ids[i], :]; `Err` naming the first id outside `0..vocab`.
pub(crate) fn embedding(
    table: &CpuBuffer,
    td: &TensorDesc,
    ids: &CpuBuffer,
    idd: &TensorDesc,
    out: &mut HostVec,
    od: &TensorDesc,
) -> Result<()> {
    let (vocab, dim) = (td.shape.dims()[0], td.shape.dims()[1]);
    let rows: Vec<usize> = match idd.dtype {
        DType::U32 => typed::<u32>(ids, idd)?.iter().map(|&i| i as usize).collect(),
        DType::I64 => typed::<i64>(ids, idd)?.iter().map(|&i| usize::try_from(i).unwrap_or(usize::MAX)).collect(),
        other => return Err(Error::DTypeMismatch { op: "Embedding", expected: "u32 or i64 ids".into(), got: other }),
    };
    if let Some((pos, _)) = rows.iter().enumerate().find(|(_, &r)| r >= vocab) {
        let shown = match idd.dtype {
            DType::I64 => typed::<i64>(ids, idd)?[pos].to_string(),
            _ => rows[pos].to_string(),
        };
        return Err(Error::arg(
            "Embedding",
            format!(
                "id {shown} at position {pos} is outside the table's {vocab} rows; check the tokenizer and vocab size"
            ),
        ));
    }
    if dim == 0 || rows.is_empty() {
        return Ok(());
    }
    by_size!(td.dtype, T => {
        let src = raw_in::<T>(table, td)?;
        let dst = raw_out::<T>(out, od.shape.numel())?;
        let per_task = (CHUNK / dim).max(1);
        dst.par_chunks_mut(per_task * dim).zip(rows.par_chunks(per_task)).for_each(|(o, ids)| {
            for (o, &r) in o.chunks_mut(dim).zip(ids) {
                o.copy_from_slice(&src[r * dim..(r + 1) * dim]);
            }
        });
    });
    Ok(())
}
