#!/usr/bin/env bash
# Copies what the device run needs (the harness, the kernel sources it includes, the PyTorch script) into
# /work/main/.gpu/gemm/ (git-ignored there), keeping the relative include paths.
set -euo pipefail
src="$(cd "$(dirname "$0")/../.." && pwd)"
dst="${1:-/work/main/.gpu/gemm}"
mkdir -p "$dst/tools/gemm" "$dst/src/backend/cuda/kernels"
cp "$src"/tools/gemm/harness.cu "$src"/tools/gemm/torch_linear_gelu.py "$dst/tools/gemm/"
cp "$src"/src/backend/cuda/kernels/{common.cuh,elementwise.cu,gemm_epilogue.cu} "$dst/src/backend/cuda/kernels/"
