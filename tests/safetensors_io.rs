//! safetensors files: a round trip keeps every dtype bit for bit (zero-copy where aligned), and truncated,
//! corrupted or lying files are errors naming the file, never panics.

use mlx_native::tensor::{load_safetensors, save_safetensors};
use mlx_native::util::random::uniform;
use mlx_native::{DType, Tensor};

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mlx-native-st-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn sample() -> Vec<(String, Tensor)> {
    vec![
        ("a.f32".into(), uniform(DType::F32, [3, 5], 1.0, 1)),
        ("b.f16".into(), uniform(DType::F16, [7], 1.0, 2)),
        ("c.bf16".into(), uniform(DType::BF16, [2, 1, 3], 1.0, 3)),
        ("d.i64".into(), Tensor::from_vec(vec![-5i64, 0, 1 << 40], [3]).unwrap()),
        ("e.u32".into(), Tensor::from_vec(vec![0u32, 7, u32::MAX, 3], [2, 2]).unwrap()),
        ("f.scalar".into(), Tensor::from_vec(vec![2.5f32], Vec::<usize>::new()).unwrap()),
        ("g.empty".into(), Tensor::from_vec(Vec::<f32>::new(), [0, 4]).unwrap()),
    ]
}

fn write_sample(name: &str) -> std::path::PathBuf {
    let path = tmp(name);
    let t = sample();
    save_safetensors(&path, t.iter().map(|(n, t)| (n.as_str(), t))).unwrap();
    path
}

#[test]
fn round_trip_keeps_every_dtype() {
    let path = write_sample("round.safetensors");
    let st = load_safetensors(&path).unwrap();
    assert_eq!(st.len(), sample().len());
    for (name, t) in sample() {
        let got = st.get(&name).unwrap();
        assert_eq!(got.dtype(), t.dtype(), "{name}");
        assert_eq!(got.shape(), t.shape(), "{name}");
        assert_eq!(got.as_bytes(), t.as_bytes(), "{name}");
    }
    // f32 data at an aligned offset is used in place.
    assert!(st.get("a.f32").unwrap().is_mapped() || st.get("a.f32").unwrap().numel() == 0);
    assert!(st.get("missing").unwrap_err().to_string().contains("missing"));
}

fn expect_bad(bytes: &[u8], name: &str) {
    let path = tmp(name);
    std::fs::write(&path, bytes).unwrap();
    let e = load_safetensors(&path).expect_err(name).to_string();
    assert!(e.contains(name), "{name}: error {e:?} does not name the file");
}

#[test]
fn truncated_files_are_errors() {
    let bytes = std::fs::read(write_sample("full.safetensors")).unwrap();
    for cut in [0, 1, 7, 8, 9, bytes.len() / 2, bytes.len() - 1] {
        expect_bad(&bytes[..cut], &format!("cut{cut}.safetensors"));
    }
}

#[test]
fn corrupted_headers_are_errors() {
    let bytes = std::fs::read(write_sample("full2.safetensors")).unwrap();
    let hlen = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    // Garbage inside the JSON header.
    let mut b = bytes.clone();
    for i in (8..8 + hlen).step_by(5) {
        b[i] = b'#';
    }
    expect_bad(&b, "garbage.safetensors");
    // A header length larger than the file.
    let mut b = bytes.clone();
    b[..8].copy_from_slice(&(bytes.len() as u64 * 4).to_le_bytes());
    expect_bad(&b, "hugeheader.safetensors");
    let mut b = bytes.clone();
    b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    expect_bad(&b, "maxheader.safetensors");
}

fn file_with_header(header: &str, data_len: usize) -> Vec<u8> {
    let mut h = header.as_bytes().to_vec();
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.resize(out.len() + data_len, 0u8);
    out
}

#[test]
fn headers_that_lie_about_sizes_are_errors() {
    let ok = file_with_header(r#"{"t":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#, 16);
    let path = tmp("honest.safetensors");
    std::fs::write(&path, &ok).unwrap();
    assert_eq!(load_safetensors(&path).unwrap().get("t").unwrap().numel(), 4);
    let lies = [
        ("shape_vs_offsets", r#"{"t":{"dtype":"F32","shape":[3,2],"data_offsets":[0,16]}}"#, 16),
        ("offsets_past_end", r#"{"t":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#, 8),
        ("reversed_offsets", r#"{"t":{"dtype":"F32","shape":[2,2],"data_offsets":[16,0]}}"#, 16),
        ("overflowing_shape", r#"{"t":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]}}"#, 16),
        ("bad_dtype", r#"{"t":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}}"#, 16),
        ("trailing_data", r#"{"t":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#, 24),
        (
            "overlapping",
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            12,
        ),
    ];
    for (name, header, len) in lies {
        expect_bad(&file_with_header(header, len), &format!("{name}.safetensors"));
    }
}

#[test]
fn missing_file_is_an_error() {
    let e = load_safetensors(tmp("does-not-exist.safetensors")).unwrap_err().to_string();
    assert!(e.contains("does-not-exist"), "{e}");
}
