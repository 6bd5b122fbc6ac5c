//! `svcca compare` reads safetensors tensors (`FILE.safetensors:TENSOR`, or a file's only
//! tensor), torch.save files (a tensor, or `FILE.pt:NAME` of a dict of tensors) and float16
//! / bfloat16 / float64 data: the same numbers as the `.npy` of the same values; what it
//! cannot read is refused naming the file and what to do.

mod common;
use common::*;
use std::path::Path;
use svcca::npy::NpyFile;
use tch::{Device, Kind, Tensor};

/// A file of tests/fixtures/torch_save (written by its make.py), as an argument.
fn torch_fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch_save").join(name).display().to_string()
}

/// `svcca compare A B --json` with `flags`: its mean similarity.
fn mean(a: &str, b: &str, flags: &[&str]) -> f64 {
    let out = svcca(&[&["compare", a, b, "--json"], flags].concat());
    assert!(out.status.success(), "{a} vs {b}: {}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["mean"].as_f64().unwrap()
}

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
    assert_refused(&svcca(&["compare", &zip.display().to_string(), &npy]), &["layer.pt", "truncated, or not a whole zip archive"]);
    let text = d.join("notes.txt");
    std::fs::write(&text, b"hello").unwrap();
    assert_refused(&svcca(&["compare", &text.display().to_string(), &npy]), &["notes.txt", "not a .npy, .safetensors or torch.save file"]);
}

/// Each torch.save fixture reads as the values of its .npy twin, exactly, and compares as
/// it to 1e-12: every float dtype, a dict's and a state_dict's tensors by name, an
/// nn.Parameter, a conv layer, a slice at storage offset 50 of a larger storage, Fortran
/// strides, and an archive rewritten by Python's zipfile (no alignment, no data
/// descriptors).
#[test]
fn torch_save_files_read_as_the_npy_of_their_values() {
    let b = torch_fixture("b.npy");
    let cases = [
        ("f32.pt", "f32.npy"),
        ("f64.pt", "f64.npy"),
        ("f16.pt", "f16.npy"),
        ("bf16.pt", "bf16.npy"),
        ("dict.pt:a", "f32.npy"),
        ("dict.pt:b", "b.npy"),
        ("state_dict.pt:weight", "weight.npy"),
        ("param.pt", "f32.npy"),
        ("slice.pt", "slice.npy"),
        ("fortran.pt", "f32.npy"),
        ("rezipped.pt", "f32.npy"),
        ("conv.pt", "conv.npy"),
    ];
    for (pt, npy) in cases {
        let (pt, npy) = (torch_fixture(pt), torch_fixture(npy));
        let mut x = NpyFile::open(Path::new(&pt)).unwrap();
        let mut y = NpyFile::open(Path::new(&npy)).unwrap();
        assert_eq!(x.header().shape, y.header().shape, "{pt}");
        let (rows_x, rows_y) = (x.rows(), y.rows());
        assert_eq!(x.read_rows_f64(0, rows_x).unwrap(), y.read_rows_f64(0, rows_y).unwrap(), "{pt}");
        let flags: &[&str] = if x.header().shape.len() == 4 { &["--conv-dense", "avgpool"] } else { &[] };
        let (got, want) = (mean(&pt, &b, flags), mean(&npy, &b, flags));
        assert!((got - want).abs() < 1e-12, "{pt}: {got} vs {want}");
    }
    assert!(NpyFile::open(Path::new(&torch_fixture("fortran.pt"))).unwrap().header().fortran_order);
    // Both sides from torch.save files, the B side named.
    let got = mean(&torch_fixture("f64.pt"), &torch_fixture("dict.pt:b"), &["--method", "cka"]);
    assert!((got - mean(&torch_fixture("f64.npy"), &b, &["--method", "cka"])).abs() < 1e-12);
}

/// What a torch.save file may hold that svcca does not read is refused, naming the file and
/// saying what to save instead; `FILE:NAME` splitting leaves paths with a ':' alone.
#[test]
fn torch_save_files_svcca_cannot_read_are_refused() {
    let b = torch_fixture("b.npy");
    let refused = |file: &str, needles: &[&str]| assert_refused_silent(&svcca(&["compare", &torch_fixture(file), &b]), needles);
    refused("strided.pt", &["strided.pt", "non-contiguous tensor (shape [40, 5], strides [10, 2]", "save t.contiguous()"]);
    refused("list.pt", &["list.pt", "holds a list", "torch.save(t)", "torch.save({'name': t})"]);
    refused("module.pt", &["module.pt", "pickled torch.nn.modules.linear.Linear", "running no pickled code", "torch.save(t)"]);
    refused("numpy.pt", &["numpy.pt", "pickled numpy._core.multiarray._reconstruct", "torch.save(t)"]);
    refused("dict.pt", &["dict.pt", "2 tensors", "FILE:NAME", "(a, b)"]);
    refused("state_dict.pt", &["state_dict.pt", "2 tensors", "(weight, bias)"]);
    refused("dict.pt:c", &["dict.pt:c", "no tensor 'c'", "a, b"]);
    refused("f32.pt:a", &["f32.pt:a", "one tensor", "drop ':a'"]);
    refused("int64.pt", &["int64.pt", "dtype int64 (torch.LongStorage)"]);
    refused("legacy.pt", &["legacy.pt", "legacy format", "_use_new_zipfile_serialization=False"]);
    refused("big_endian.pt", &["big_endian.pt", "big-endian"]);
    refused("deflated.pt", &["deflated.pt", "compressed", "torch.save"]);
    refused("neg_view.pt", &["neg_view.pt", "flags neg", "resolve_neg()"]);
    let tmp = tempfile::tempdir().unwrap();
    let whole = std::fs::read(torch_fixture("f32.pt")).unwrap();
    for keep in [whole.len() - 1, whole.len() / 2, 10] {
        let cut = tmp.path().join("cut.pt");
        std::fs::write(&cut, &whole[..keep]).unwrap();
        assert_refused_silent(&svcca(&["compare", &cut.display().to_string(), &b]), &["cut.pt", "truncated"]);
    }
    // A path with a ':' of its own opens whole, for any extension; FILE:NAME of a missing
    // FILE is that path's error.
    let colon = tmp.path().join("a:b.pt");
    std::fs::copy(torch_fixture("f32.pt"), &colon).unwrap();
    let want = mean(&torch_fixture("f32.npy"), &b, &[]);
    assert!((mean(&colon.display().to_string(), &b, &[]) - want).abs() < 1e-12);
    let missing = tmp.path().join("none.pt:a").display().to_string();
    assert_refused_silent(&svcca(&["compare", &missing, &b]), &["none.pt:a", "cannot open"]);
}
