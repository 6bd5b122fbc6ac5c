//! `svcca compare` reads safetensors tensors (`FILE.safetensors:TENSOR`, or a file's only
//! tensor) and float16 / bfloat16 / float64 data: the same numbers as the float32 `.npy`
//! of the same values; what it cannot read is refused naming the file and what to do.

mod common;
use common::*;
use tch::{Device, Kind, Tensor};

fn similarity(a: &str, b: &str) -> f64 {
    let out = svcca(&["compare", a, b, "--json", "--conv-dense", "avgpool"]);
    assert!(out.status.success(), "{a} vs {b}: {}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["mean"].as_f64().unwrap()
}

#[test]
fn safetensors_and_half_precision_compare_as_their_float32_values() {
    tch::manual_seed(3);
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let a = Tensor::randn([400, 4, 6, 6], (Kind::Float, Device::Cpu));
    let b = a.mean_dim(&[2i64, 3][..], false, Kind::Float).matmul(&Tensor::randn([4, 9], (Kind::Float, Device::Cpu)))
        + Tensor::randn([400, 9], (Kind::Float, Device::Cpu));
    let b_npy = write_npy(d, "b.npy", &b);
    let file = d.join("layers.safetensors");
    let tensors: Vec<(&str, Tensor)> = vec![
        ("a_f64", a.to_kind(Kind::Double)),
        ("a_f16", a.to_kind(Kind::Half)),
        ("a_bf16", a.to_kind(Kind::BFloat16)),
        ("b", b.shallow_clone()),
    ];
    Tensor::write_safetensors(&tensors, &file).unwrap();
    let f = file.display().to_string();
    // float64 holds float32's values exactly: the same number as the float32 .npy.
    let want = similarity(&write_npy(d, "a.npy", &a), &b_npy);
    assert!((similarity(&format!("{f}:a_f64"), &format!("{f}:b")) - want).abs() < 1e-12);
    // Half precision: as the float32 .npy of the rounded values.
    for (name, kind) in [("a_f16", Kind::Half), ("a_bf16", Kind::BFloat16)] {
        let rounded = write_npy(d, &format!("{name}.npy"), &a.to_kind(kind));
        let got = similarity(&format!("{f}:{name}"), &b_npy);
        assert!((got - similarity(&rounded, &b_npy)).abs() < 1e-12, "{name}");
        assert!((got - want).abs() < 0.02, "{name}: {got} vs {want}: rounding moves it little");
    }
    // A file of one tensor needs no name; a float16 .npy reads too.
    let one = d.join("one.safetensors");
    Tensor::write_safetensors(&[("layer", &b)], &one).unwrap();
    assert!((similarity(&format!("{f}:a_f64"), &one.display().to_string()) - want).abs() < 1e-12);
    let half_npy = d.join("a16.npy");
    a.to_kind(Kind::Half).write_npy(&half_npy).unwrap();
    assert!((similarity(&half_npy.display().to_string(), &b_npy) - similarity(&format!("{f}:a_f16"), &b_npy)).abs() < 1e-12);
}

#[test]
fn what_cannot_be_read_is_refused_saying_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let x = Tensor::randn([50, 3], (Kind::Float, Device::Cpu));
    let npy = write_npy(d, "x.npy", &x);
    let file = d.join("two.safetensors");
    Tensor::write_safetensors(&[("p", &x), ("q", &x)], &file).unwrap();
    let f = file.display().to_string();
    assert_refused(&svcca(&["compare", &f, &npy]), &["two.safetensors", "2 tensors", "FILE.safetensors:TENSOR", "p, q"]);
    assert_refused(&svcca(&["compare", &format!("{f}:r"), &npy]), &["two.safetensors:r", "no tensor 'r'", "p, q"]);
    let ints = d.join("ints.safetensors");
    Tensor::write_safetensors(&[("i", &Tensor::ones([50, 3], (Kind::Int64, Device::Cpu)))], &ints).unwrap();
    assert_refused(&svcca(&["compare", &ints.display().to_string(), &npy]), &["ints.safetensors", "dtype I64"]);
    let zip = d.join("layer.pt");
    std::fs::write(&zip, b"PK\x03\x04 and the rest of a torch.save archive").unwrap();
    assert_refused(&svcca(&["compare", &zip.display().to_string(), &npy]), &["layer.pt", "torch.save", "safetensors.torch.save_file"]);
    let text = d.join("notes.txt");
    std::fs::write(&text, b"hello").unwrap();
    assert_refused(&svcca(&["compare", &text.display().to_string(), &npy]), &["notes.txt", "not a .npy or .safetensors file"]);
}
