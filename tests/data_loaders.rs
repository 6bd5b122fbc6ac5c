//! Every dataset reader on small files the test writes: the happy path (values land where
//! they should), and each kind of bad file refused with a message naming it.

use flate2::{write::GzEncoder, Compression};
use std::io::Write;
use std::path::Path;
use svcca::config::{DataConfig, DatasetName};
use svcca::data::{cifar, idx, synthetic, Dataset};
use tch::{Device, Kind};

/// `n` CIFAR-10 records; record i has label (i + offset) % 10 and every pixel byte equal
/// to (i * 7 + channel) % 256, so the test can find each value again.
fn cifar_records(n: usize, offset: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(((i + offset) % 10) as u8);
        for c in 0..3 {
            out.extend(std::iter::repeat_n(((i * 7 + c) % 256) as u8, 1024));
        }
    }
    out
}

fn write_cifar_folder(dir: &Path, per_file: usize) {
    for (k, name) in cifar::TRAIN_FILES.iter().enumerate() {
        std::fs::write(dir.join(name), cifar_records(per_file, k)).unwrap();
    }
    std::fs::write(dir.join(cifar::TEST_FILE), cifar_records(3, 0)).unwrap();
}

fn tar_gz(dir: &Path, archive: &Path) {
    let file = std::fs::File::create(archive).unwrap();
    let mut builder = tar::Builder::new(GzEncoder::new(file, Compression::fast()));
    builder.append_dir_all(cifar::FOLDER, dir).unwrap();
    builder.into_inner().unwrap().finish().unwrap();
}

fn err_text<T: std::fmt::Debug>(r: Result<T, svcca::error::InputError>) -> String {
    r.expect_err("should be refused").message
}

#[test]
fn cifar_from_folder_and_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let batches = tmp.path().join("batches");
    std::fs::create_dir(&batches).unwrap();
    write_cifar_folder(&batches, 2);
    let (train, test) = cifar::load(&batches).unwrap();
    assert_eq!((train.len(), test.len()), (10, 3));
    // data_batch_2 (k = 1) record 1: label 2, channel 2 all (7 + 2).
    assert_eq!(train.labels[3], 2);
    let image = &train.images[3 * 3072..4 * 3072];
    assert!(image[2048..].iter().all(|&v| v == 9) && image[..1024].iter().all(|&v| v == 7));

    let archive = tmp.path().join(cifar::ARCHIVE);
    tar_gz(&batches, &archive);
    let (train2, test2) = cifar::load(&archive).unwrap();
    assert_eq!(train2, train);
    assert_eq!(test2, test);
    // A folder holding only the archive works too.
    let only_archive = tmp.path().join("only");
    std::fs::create_dir(&only_archive).unwrap();
    std::fs::rename(&archive, only_archive.join(cifar::ARCHIVE)).unwrap();
    assert_eq!(cifar::load(&only_archive).unwrap().0, train);

    let data = Dataset::load(
        &DataConfig { dataset: DatasetName::Cifar10, path: Some(batches), train_size: Some(4), ..Default::default() },
        Device::Cpu,
    )
    .unwrap();
    assert_eq!(data.train.images.size(), [4, 3, 32, 32]);
    assert_eq!(data.train.images.kind(), Kind::Uint8);
    assert_eq!(Vec::<i64>::try_from(&data.train.labels).unwrap(), vec![0, 1, 1, 2]);
}

#[test]
fn cifar_bad_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let e = err_text(cifar::load(tmp.path()));
    assert!(e.contains("svcca data fetch cifar10") && e.contains(&tmp.path().display().to_string()), "{e}");

    write_cifar_folder(tmp.path(), 2);
    let truncated = tmp.path().join("data_batch_3.bin");
    let mut bytes = std::fs::read(&truncated).unwrap();
    bytes.truncate(bytes.len() - 100);
    std::fs::write(&truncated, bytes).unwrap();
    let e = err_text(cifar::load(tmp.path()));
    assert!(e.contains("data_batch_3.bin") && e.contains("truncated"), "{e}");

    write_cifar_folder(tmp.path(), 2);
    let mut bytes = cifar_records(3, 0);
    bytes[cifar::RECORD] = 12; // record 1's label
    std::fs::write(tmp.path().join(cifar::TEST_FILE), bytes).unwrap();
    let e = err_text(cifar::load(tmp.path()));
    assert!(e.contains("test_batch.bin") && e.contains("record 1") && e.contains("label 12"), "{e}");

    std::fs::remove_file(tmp.path().join("data_batch_5.bin")).unwrap();
    let e = err_text(cifar::load(tmp.path()));
    assert!(e.contains("data_batch_5.bin") && e.contains("missing"), "{e}");

    let not_gz = tmp.path().join("x.tar.gz");
    std::fs::write(&not_gz, b"hello").unwrap();
    let e = err_text(cifar::load(&not_gz));
    assert!(e.contains("x.tar.gz"), "{e}");
}

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Writes the four IDX files: `n` train and 2 test images of 4 x 5; gzipped if `zip`.
fn write_idx(dir: &Path, n: usize, zip: bool) {
    for (prefix, count) in [("train", n), ("t10k", 2)] {
        let pixels: Vec<u8> = (0..count * 20).map(|i| (i % 251) as u8).collect();
        let labels: Vec<u8> = (0..count).map(|i| (i % 10) as u8).collect();
        for (name, bytes) in [
            (format!("{prefix}-images-idx3-ubyte"), idx_bytes(&[count as u32, 4, 5], &pixels)),
            (format!("{prefix}-labels-idx1-ubyte"), idx_bytes(&[count as u32], &labels)),
        ] {
            if zip {
                std::fs::write(dir.join(format!("{name}.gz")), gz(&bytes)).unwrap();
            } else {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
        }
    }
}

#[test]
fn idx_plain_and_gzipped() {
    for zip in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        write_idx(tmp.path(), 12, zip);
        let (train, test) = idx::load(tmp.path(), idx::Flavour::FashionMnist).unwrap();
        assert_eq!((train.len(), test.len()), (12, 2));
        assert_eq!((train.channels, train.height, train.width), (1, 4, 5));
        assert_eq!(train.images[25], 25);
        assert_eq!(train.labels[11], 1);
        let data =
            Dataset::load(&DataConfig { dataset: DatasetName::Mnist, path: Some(tmp.path().into()), ..Default::default() }, Device::Cpu)
                .unwrap();
        assert_eq!(data.train.images.size(), [12, 1, 4, 5]);
        assert_eq!(data.shape, [1, 4, 5]);
    }
}

#[test]
fn idx_bad_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let e = err_text(idx::load(tmp.path(), idx::Flavour::FashionMnist));
    assert!(e.contains("train-images-idx3-ubyte") && e.contains("dataset-fashion-mnist"), "{e}");

    write_idx(tmp.path(), 5, false);
    let images = tmp.path().join("train-images-idx3-ubyte");
    let mut bytes = std::fs::read(&images).unwrap();
    bytes.truncate(bytes.len() - 3);
    std::fs::write(&images, &bytes).unwrap();
    let e = err_text(idx::load(tmp.path(), idx::Flavour::Mnist));
    assert!(e.contains("train-images-idx3-ubyte") && e.contains("truncated"), "{e}");

    // Truncated gzip stream.
    let full = gz(&idx_bytes(&[5, 4, 5], &[0; 100]));
    std::fs::remove_file(&images).unwrap();
    std::fs::write(tmp.path().join("train-images-idx3-ubyte.gz"), &full[..full.len() / 2]).unwrap();
    let e = err_text(idx::load(tmp.path(), idx::Flavour::Mnist));
    assert!(e.contains("train-images-idx3-ubyte.gz"), "{e}");
    std::fs::remove_file(tmp.path().join("train-images-idx3-ubyte.gz")).unwrap();

    write_idx(tmp.path(), 5, false);
    std::fs::write(tmp.path().join("t10k-labels-idx1-ubyte"), idx_bytes(&[2], &[3, 10])).unwrap();
    let e = err_text(idx::load(tmp.path(), idx::Flavour::Mnist));
    assert!(e.contains("t10k-labels-idx1-ubyte") && e.contains("is 10"), "{e}");

    std::fs::write(tmp.path().join("t10k-labels-idx1-ubyte"), idx_bytes(&[3], &[3, 1, 2])).unwrap();
    let e = err_text(idx::load(tmp.path(), idx::Flavour::Mnist));
    assert!(e.contains("2 images") && e.contains("3 labels"), "{e}");

    std::fs::write(tmp.path().join("t10k-labels-idx1-ubyte"), b"\x01\x02\x03\x04rest").unwrap();
    let e = err_text(idx::load(tmp.path(), idx::Flavour::Mnist));
    assert!(e.contains("magic"), "{e}");
}

#[test]
fn synthetic_is_deterministic_and_balanced() {
    let (a_train, a_test) = synthetic::generate(3, 300, 50);
    let (b_train, b_test) = synthetic::generate(3, 300, 50);
    assert_eq!(a_train, b_train);
    assert_eq!(a_test, b_test);
    assert_ne!(a_train.images, a_test.images[..].repeat(6));
    // Image i does not depend on how many are asked for.
    let (short, _) = synthetic::generate(3, 10, 1);
    assert_eq!(short.images[..], a_train.images[..short.images.len()]);
    assert_eq!(short.labels[..], a_train.labels[..10]);
    // Another seed, other images.
    let (c_train, _) = synthetic::generate(4, 300, 50);
    assert_ne!(c_train.images, a_train.images);
    assert_eq!((a_train.channels, a_train.height, a_train.width), (3, 32, 32));
    let mut counts = [0; 10];
    a_train.labels.iter().for_each(|&l| counts[l as usize] += 1);
    assert!(counts.iter().all(|&c| (10..=60).contains(&c)), "{counts:?}");
    // Pixels spread over the byte range, centred near 128.
    let mean = a_train.images.iter().map(|&v| v as f64).sum::<f64>() / a_train.images.len() as f64;
    assert!((mean - 128.0).abs() < 3.0, "mean {mean}");
}
