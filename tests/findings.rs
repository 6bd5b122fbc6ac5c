//! The paper's other findings on tiny runs: compression (all directions change nothing,
//! none gives a constant output and chance accuracy), class sensitivity (the logits layer
//! against its own logit is 1), dimensionality against closed forms, compare-runs (a run
//! against itself is 1 on the diagonal; other layer lists give a rectangular matrix), and
//! the CLI's errors.

mod common;

use common::{assert_refused, svcca, Tiny};
use std::path::{Path, PathBuf};
use svcca::analysis::compression::{self, CompressionMethod as Kept, LayerSpec, Reference};
use svcca::analysis::runs::Run;
use svcca::analysis::{classes, compare_runs, dimensionality};
use svcca::config::Config;
use svcca::similarity::{self, ConvDense, Keep, Method, Options};
use tch::nn::ModuleT;
use tch::{Kind, Tensor};

/// 20 steps of a narrow convnet, analysed on a probe of 160 keeping `keep` of the
/// variance, at `layers`.
fn tiny(keep: f64, layers: &[&str]) -> Config {
    let mut c = Tiny { test_size: 200, width: 4, fc1: 16, fc2: 8, steps: 20, probe_size: Some(160), ..Tiny::default() }.config();
    c.analysis.keep = keep;
    c.analysis.layers = Some(layers.iter().map(|l| l.to_string()).collect());
    c
}

const LAYERS: &[&str] = &["c1", "c3", "p2", "fc1", "bn4", "logits"];

fn train(dir: &Path, config: Config) -> PathBuf {
    svcca::train::train(config, dir).unwrap();
    dir.to_path_buf()
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn compression_all_directions_change_nothing_and_none_give_chance() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = train(&tmp.path().join("run"), tiny(1.0, LAYERS));
    let run = Run::open(&dir, None).unwrap();
    let layers = ["c3".to_string(), "fc1".to_string()];
    let fitted = compression::fit(&run, &layers, None, Keep::Variance(1.0)).unwrap();
    let fit = run.fit_set();
    let plain = tch::no_grad(|| run.net.forward_t(&fit.images, false));
    for f in &fitted {
        // keep = 1: every direction above rounding noise; projecting onto all of them is
        // the identity on the data they were fitted on (its span), conv layers included.
        let all = f.fitted.directions.projection(f.fitted.directions.len());
        let p2 = all.matmul(&all);
        assert!(max_abs(&p2, &all) < 1e-8, "{}: P is not a projection", f.layer);
        let map = f.method(Kept::Svcca, f.fitted.directions.len(), 0, 0);
        let edit = |h: &Tensor| map.apply(h, &f.fitted.directions.mean);
        let out = tch::no_grad(|| run.net.forward_edited(&fit.images, false, &[(&f.layer, &edit)]).unwrap());
        let scale = plain.abs().max().double_value(&[]);
        assert!(max_abs(&out, &plain) < 1e-4 * scale, "{}: logits moved by {}", f.layer, max_abs(&out, &plain));
        // None: the layer outputs its mean for every image, so the logits are constant.
        for method in Kept::ALL {
            let zero = f.method(method, 0, 0, 0);
            let edit = |h: &Tensor| zero.apply(h, &f.fitted.directions.mean);
            let out = tch::no_grad(|| run.net.forward_edited(&fit.images, false, &[(&f.layer, &edit)]).unwrap());
            let spread = (&out - out.get(0)).abs().max().double_value(&[]);
            assert!(spread < 1e-5 * scale, "{} {method}: k = 0 leaves logits varying by {spread}", f.layer);
        }
    }

    // Batched evaluation (every map of a layer stacked on one forward of the layers
    // below) gives the accuracies of the one-map-at-a-time evaluation: the same projected
    // outputs, only the batch size of the layers above differs.
    for f in &fitted {
        let mut maps = Vec::new();
        for k in [0, 1, 2, 3, f.fitted.directions.len()] {
            maps.push(f.method(Kept::Svcca, k, 0, 0));
        }
        for k in [0, 1, 3, f.fitted.units() / 2, f.fitted.units()] {
            maps.push(f.method(Kept::Active, k, 0, 0));
            maps.push(f.method(Kept::Random, k, 1, 0));
        }
        for eval_images in [None, Some(130)] {
            let batched = compression::layer_accuracies(&run, eval_images, &f.layer, &f.fitted.directions.mean, &maps, true).unwrap();
            let single = compression::layer_accuracies(&run, eval_images, &f.layer, &f.fitted.directions.mean, &maps, false).unwrap();
            assert_eq!(batched.len(), maps.len());
            for (b, s) in batched.iter().zip(&single) {
                assert!((b - s).abs() < 1e-12, "{} ({eval_images:?} images): batched {batched:?} one at a time {single:?}", f.layer);
            }
            // On a subset of 130 images: counts out of 130.
            let n = eval_images.unwrap_or(200) as f64;
            assert!(batched.iter().all(|a| ((a * n) - (a * n).round()).abs() < 1e-9), "{batched:?}");
        }
    }

    // The sweep: at k = 0 every method scores the share of the test split in the one
    // class the constant output predicts (chance); the table and the plot are written.
    let specs: Vec<LayerSpec> = ["fc1:0.5", "c3:0.5"].iter().map(|s| s.parse().unwrap()).collect();
    let c = compression::compression(&dir, &specs, &Reference::Logits, None, None).unwrap();
    let labels = Vec::<i64>::try_from(&run.data.test.labels).unwrap();
    for s in &c.layers {
        let f = fitted.iter().find(|f| f.layer == s.layer).unwrap();
        let zero = f.method(Kept::Svcca, 0, 0, 0);
        let edit = |h: &Tensor| zero.apply(h, &f.fitted.directions.mean);
        let x = run.data.normalise(&run.data.test.images.narrow(0, 0, 1));
        let class = tch::no_grad(|| run.net.forward_edited(&x, false, &[(&s.layer, &edit)]).unwrap()).argmax(-1, false).int64_value(&[0]);
        let chance = labels.iter().filter(|&&l| l == class).count() as f64 / labels.len() as f64;
        for method in Kept::ALL {
            let p = s.points.iter().find(|p| p.method == method && p.k == 0).unwrap();
            assert!((p.accuracy - chance).abs() < 1e-12, "{} {method} k=0: {} vs chance {chance}", s.layer, p.accuracy);
        }
        // All units kept by the baselines: the network unchanged.
        for method in [Kept::Active, Kept::Random] {
            let p = s.points.iter().find(|p| p.method == method && p.k == s.units).unwrap();
            assert!((p.accuracy - c.full_accuracy).abs() < 1e-12, "{} {method} all units: {}", s.layer, p.accuracy);
        }
        assert_eq!(s.directions, f.fitted.directions.len());
    }
    let (_, full) = svcca::train::evaluate(&run.net, &run.data, 100);
    assert!((c.full_accuracy - full).abs() < 1e-12);
    // fc1:0.5 and c3:0.5 compressed together in the joint rows: 8 of 16 units, 2 of 4
    // channels; batched, the accuracies of each method's maps applied on one forward.
    assert_eq!(c.joint.len(), 3);
    assert_eq!(c.joint[1].layers, vec![("fc1".to_string(), 8), ("c3".to_string(), 2)]);
    let x = run.data.normalise(&run.data.test.images);
    for j in &c.joint {
        let draws = if j.method == Kept::Random { 3 } else { 1 };
        let mut sum = 0.0;
        for draw in 0..draws {
            let maps: Vec<(&compression::FittedLayer, compression::Map)> = [("fc1", 8), ("c3", 2)]
                .iter()
                .map(|&(l, k)| {
                    let f = fitted.iter().find(|f| f.layer == l).unwrap();
                    (f, f.method(j.method, k, draw, 0))
                })
                .collect();
            let fns: Vec<_> = maps.iter().map(|(f, p)| move |h: &Tensor| p.apply(h, &f.fitted.directions.mean)).collect();
            let edits: Vec<svcca::model::Edit> =
                maps.iter().zip(&fns).map(|((f, _), e)| (f.layer.as_str(), e as &dyn Fn(&Tensor) -> Tensor)).collect();
            let logits = tch::no_grad(|| run.net.forward_edited(&x, false, &edits).unwrap());
            sum += logits.argmax(-1, false).eq_tensor(&run.data.test.labels).sum(Kind::Int64).int64_value(&[]) as f64 / 200.0;
        }
        assert!(
            (j.accuracy - sum / draws as f64).abs() < 1e-12,
            "{}: batched {} one at a time {}",
            j.method,
            j.accuracy,
            sum / draws as f64
        );
    }
    for f in ["compression.csv", "compression_summary.csv", "layer-fc1.json", "settings.json"]
        .map(|f| format!("analysis/compression-logits/{f}"))
    {
        assert!(dir.join(&f).exists(), "{f}");
    }
    // Rerun: read back, the same numbers; other settings are refused.
    let again = compression::compression(&dir, &specs, &Reference::Logits, None, None).unwrap();
    let points = |c: &compression::Compression| c.layers.iter().map(|s| s.points.clone()).collect::<Vec<_>>();
    assert_eq!(points(&again), points(&c));
    assert_eq!((again.full_accuracy, &again.joint), (c.full_accuracy, &c.joint));
    // Against the same layer at the final checkpoint (the same network): correlations 1.
    let spec: Vec<LayerSpec> = vec!["fc1".parse().unwrap()];
    let same = compression::compression(&dir, &spec, &Reference::Step(20), None, None).unwrap();
    assert!(same.layers[0].correlations.iter().all(|c| (c - 1.0).abs() < 1e-6), "{:?}", same.layers[0].correlations);
    let early = compression::compression(&dir, &spec, &Reference::Step(10), None, None).unwrap();
    assert!(early.layers[0].correlations[0] < 1.0 - 1e-6);
    let err = compression::compression(&dir, &spec, &Reference::Step(7), None, None).unwrap_err();
    assert!(err.to_string().contains("no checkpoint at step 7"), "{err}");
    let settings = dir.join("analysis/compression-logits/settings.json");
    let text = std::fs::read_to_string(&settings).unwrap();
    std::fs::write(&settings, text.replace("\"keep\": 1.0", "\"keep\": 0.5")).unwrap();
    let err = compression::compression(&dir, &specs, &Reference::Logits, None, None).unwrap_err();
    assert!(err.to_string().contains("other settings"), "{err}");
    // --eval-images: recorded in the settings, so another number is refused, not mixed.
    let err = compression::compression(&dir, &spec, &Reference::Step(10), Some(50), None).unwrap_err();
    assert!(err.to_string().contains("other settings"), "{err}");
}

#[test]
fn class_sensitivity_of_the_logits_to_their_own_logit_is_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = train(&tmp.path().join("run"), tiny(1.0, LAYERS));
    let c = classes::classes(&dir, "0,3,9", ConvDense::Avgpool, None).unwrap();
    assert_eq!(c.settings.classes, [0, 3, 9]);
    let steps: Vec<u64> = c.steps.iter().map(|s| s.step).collect();
    assert_eq!(steps, [0, 10, 20]);
    let last = c.steps.last().unwrap();
    let logits = c.settings.analysis.layers.iter().position(|l| l == "logits").unwrap();
    for (ci, row) in last.matrix.iter().enumerate() {
        let v = row[logits].unwrap();
        assert!((v - 1.0).abs() < 1e-6, "class {}: {v}", c.settings.classes[ci]);
        // Every layer: a correlation, in [0, 1]; conv layers included.
        for v in row {
            let v = v.unwrap();
            assert!((0.0..=1.0 + 1e-9).contains(&v), "{v}");
        }
    }
    // The untrained network's logits are another map of the input: not 1.
    assert!(c.steps[0].matrix[0][logits].unwrap() < 1.0 - 1e-6);
    assert!(dir.join("analysis/classes.csv").exists());
    assert!(classes::parse_classes("10", 10).unwrap_err().to_string().contains("class 10 is out of range"));
    assert_eq!(classes::parse_classes("all", 3).unwrap(), [0, 1, 2]);
    // A class named twice is refused by the library too, not only by the command line.
    assert!(classes::parse_classes("1, 01", 10).unwrap_err().to_string().contains("class 01 is given twice"));
}

/// `--classes` by channel means (the default) is, for a conv layer, SVCCA between the
/// layer averaged over its positions by hand and the final logit column, under the same
/// keep rule; the choice is recorded, and a folder made with the other is refused.
#[test]
fn class_sensitivity_of_conv_layers_is_that_of_their_channel_means() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = train(&tmp.path().join("run"), tiny(0.99, &["c1", "c3", "fc1"]));
    let c = classes::classes(&dir, "2,7", ConvDense::Avgpool, None).unwrap();
    assert_eq!(c.settings.analysis.similarity.conv_dense, ConvDense::Avgpool);
    let mut run = Run::open(&dir, None).unwrap();
    let probe = run.probe();
    run.load_step(20).unwrap();
    let logits = svcca::activations::record::record(&run.net, &probe, &["logits".to_string()]).unwrap().remove(0);
    let options = Options { method: Method::Svcca, keep: Keep::Variance(0.99), precision: Default::default() };
    let mut compared = 0;
    for s in &c.steps {
        run.load_step(s.step).unwrap();
        for (li, layer) in ["c1", "c3"].iter().enumerate() {
            let acts = svcca::activations::record::record(&run.net, &probe, &[layer.to_string()]).unwrap().remove(0);
            assert_eq!(acts.dim(), 4, "{layer} is a conv layer");
            // Each channel's mean over the h*w positions of each image, summed by hand.
            let (n, ch, h, w) = acts.size4().unwrap();
            let flat = acts.to_kind(Kind::Double).reshape([n, ch, h * w]);
            let mut sums = Tensor::zeros([n, ch], (Kind::Double, tch::Device::Cpu));
            for p in 0..h * w {
                sums += flat.select(2, p);
            }
            let means = sums / (h * w) as f64;
            for (ci, &class) in c.settings.classes.iter().enumerate() {
                let want = similarity::compare(&means, &logits.narrow(1, class, 1), &options).unwrap().mean;
                let got = s.matrix[ci][li].unwrap();
                assert!((got - want).abs() < 1e-6, "step {} {layer} class {class}: {got} vs {want}", s.step);
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 3 * 2 * 2);
    // The other choice is refused, naming the one the folder was made with.
    let err = classes::classes(&dir, "2,7", ConvDense::Flatten, None).unwrap_err();
    assert!(err.to_string().contains("--classes-conv avgpool"), "{err}");
    // A settings file written before the flag records the config's analysis.conv_dense:
    // made under flatten, it reads as flatten; without the key (older still), as the
    // channel means it was made with.
    let settings = dir.join("analysis/classes/settings.json");
    let text = std::fs::read_to_string(&settings).unwrap();
    std::fs::write(&settings, text.replace("\"conv_dense\": \"avgpool\"", "\"conv_dense\": \"flatten\"")).unwrap();
    let err = classes::classes(&dir, "2,7", ConvDense::Avgpool, None).unwrap_err();
    assert!(err.to_string().contains("--classes-conv flatten"), "{err}");
    std::fs::write(&settings, text.replace("\"conv_dense\": \"avgpool\",", "")).unwrap();
    assert!(!std::fs::read_to_string(&settings).unwrap().contains("conv_dense"));
    assert_eq!(classes::classes(&dir, "2,7", ConvDense::Avgpool, None).unwrap().steps, c.steps);
}

#[test]
fn dimensionality_matches_closed_forms() {
    // X = U diag(s) V' with U's columns orthonormal and centred: its principal variances
    // are s^2 exactly, and the 99% count follows from them.
    let (n, m) = (300, 12);
    let s: Vec<f64> = (0..m).map(|i| 10.0 * 0.55f64.powi(i as i32)).collect();
    let g = common::randn(1, n, m);
    let (u, _) = Tensor::linalg_qr(&(&g - g.mean_dim(0, true, Kind::Double)), "reduced");
    let (v, _) = Tensor::linalg_qr(&common::randn(2, m, m), "reduced");
    let x = u.matmul(&Tensor::from_slice(&s).diag(0)).matmul(&v.tr()) + 3.0;
    let (variances, rank) = similarity::principal_variances(&x).unwrap();
    let want: Vec<f64> = s.iter().map(|v| v * v).collect();
    common::assert_close(&variances, &want, 1e-9, "principal variances");
    assert_eq!(rank, m as usize);
    let total: f64 = want.iter().sum();
    for fraction in [0.5, 0.9, 0.99, 0.999] {
        let closed = (1..=want.len()).find(|&k| want[..k].iter().sum::<f64>() / total >= fraction).unwrap();
        assert_eq!(similarity::directions_needed(&variances, fraction), closed, "fraction {fraction}");
    }
    // Rank-deficient: 3 directions, the rest exact zeros.
    let low = u.narrow(1, 0, 3).matmul(&common::randn(3, 3, m));
    assert_eq!(similarity::principal_variances(&low).unwrap().1, 3);

    // The layer cut to its top k directions against a reference that is exactly its
    // first two principal components: correlations (1, 1) from k = 2 on, (1) at k = 1.
    let reference = u.narrow(1, 0, 2).matmul(&common::randn(4, 2, 2));
    for (k, want) in [(1, vec![1.0]), (2, vec![1.0, 1.0]), (5, vec![1.0, 1.0])] {
        let d = similarity::directions_each(&x, &reference, Keep::TopK(k), Keep::All).unwrap();
        common::assert_close(&d.correlations, &want, 1e-9, &format!("k = {k}"));
    }
    // At k = 1 the one direction left is not in the reference: correlation 0.
    let other = u.narrow(1, 5, 2);
    let d = similarity::directions_each(&x, &other, Keep::TopK(1), Keep::All).unwrap();
    assert!(d.correlations[0] < 1e-9, "{:?}", d.correlations);
}

#[test]
fn directions_are_the_svcca_ones() {
    // The canonical correlations found with the directions are SVCCA's; the directions are
    // whitened (D' C D = I) and their projections nest.
    let a = common::randn(5, 400, 10);
    let b = a.narrow(1, 0, 4).matmul(&common::randn(6, 4, 6)) + 0.5 * common::randn(7, 400, 6);
    let d = similarity::directions(&a, &b, Keep::Variance(0.99)).unwrap();
    let s = similarity::compare(&a, &b, &Options { method: Method::Svcca, keep: Keep::Variance(0.99), ..Options::default() }).unwrap();
    common::assert_close(&d.correlations, &s.correlations, 1e-9, "correlations");
    let ac = &a - a.mean_dim(0, true, Kind::Double);
    let gram = d.weights.tr().matmul(&ac.tr().matmul(&ac)).matmul(&d.weights);
    assert!(max_abs(&gram, &Tensor::eye(d.len() as i64, (Kind::Double, tch::Device::Cpu))) < 1e-9);
    let (p3, p6) = (d.projection(3), d.projection(6));
    assert!(max_abs(&p3.matmul(&p6), &p3) < 1e-9);
    // The variates of the top 3 directions correlate with B as the top 3 correlations say
    // (B reduced by the same rule; the 3 whitened variates have equal variance, all kept).
    let z = ac.matmul(&d.weights.narrow(1, 0, 3));
    let top = similarity::compare(&z, &b, &Options { method: Method::Svcca, keep: Keep::Variance(0.99), ..Options::default() }).unwrap();
    common::assert_close(&top.correlations, &s.correlations[..3], 1e-9, "top-3 variates");
}

#[test]
fn compare_runs_with_itself_and_across_architectures() {
    let tmp = tempfile::tempdir().unwrap();
    let a = train(&tmp.path().join("a"), tiny(0.99, LAYERS));
    let b = train(&tmp.path().join("b"), tiny(0.99, &["c1", "fc1", "logits"]));
    let out = tmp.path().join("self");
    let c = compare_runs::compare_runs(&[a.clone(), a.clone(), a.clone()], &out, None).unwrap();
    assert_eq!(c.pairs.len(), 3);
    let s = c.summary.as_ref().unwrap();
    for (i, l) in s.layers.iter().enumerate() {
        assert!((s.mean[i][i].unwrap() - 1.0).abs() < 1e-6, "{l}: {:?}", s.mean[i][i]);
        assert!(s.std[i][i].unwrap() < 1e-6);
        for p in &c.pairs {
            assert!((p.matrix[i][i].unwrap() - 1.0).abs() < 1e-6);
        }
    }
    assert!(s.mean[0][5].unwrap() < 0.99);
    assert!(out.join("mean.csv").exists() && out.join("pairs.csv").exists());
    // Each entry's chance level: run a's layer on shuffled datapoints against run b's,
    // as a pair compared on its own (the same run each time, so the same in every pair).
    let run = svcca::analysis::runs::Run::open(&a, None).unwrap();
    let names: Vec<String> = s.layers.clone();
    let finals = svcca::activations::record::record(&run.net, &run.probe(), &names).unwrap();
    let perm = tch::Tensor::from_slice(
        &svcca::data::rng::Rng::stream(run.config.analysis.seed, &[0x73687566]).permutation(finals[0].size()[0] as usize),
    );
    for (i, x) in finals.iter().enumerate() {
        for (j, y) in finals.iter().enumerate() {
            let alone = svcca::activations::pair(&x.index_select(0, &perm), y, &run.config, ["a", "b"]).unwrap();
            for p in &c.pairs {
                assert!((p.chance[i][j].unwrap() - alone).abs() < 1e-9, "{} vs {}: {:?} vs {alone}", names[i], names[j], p.chance[i][j]);
            }
            assert!((s.chance[i][j].unwrap() - alone).abs() < 1e-9);
        }
        assert!(s.chance[i][i].unwrap() < 0.9, "{}: chance {:?}", names[i], s.chance[i][i]);
    }
    assert!(std::fs::read_to_string(out.join("pairs.csv")).unwrap().starts_with("run_a,run_b,layer_a,layer_b,similarity,chance\n"));
    // A pair file from before the chance level: compared again for it.
    let file = out.join("pair-0-1.json");
    let mut old: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    old.as_object_mut().unwrap().remove("chance");
    std::fs::write(&file, serde_json::to_string(&old).unwrap()).unwrap();
    let again = compare_runs::compare_runs(&[a.clone(), a.clone(), a.clone()], &out, None).unwrap();
    assert_eq!(again.pairs, c.pairs);

    // Other layer lists: a rectangular matrix, no mean; same-named layers of one run.
    let out = tmp.path().join("ab");
    let c = compare_runs::compare_runs(&[a.clone(), b.clone()], &out, None).unwrap();
    let p = &c.pairs[0];
    assert_eq!((p.matrix.len(), p.matrix[0].len()), (6, 3));
    assert!(c.summary.is_none());
    assert!((p.matrix[5][2].unwrap() - 1.0).abs() < 1e-6, "the same run's logits: {:?}", p.matrix[5][2]);
    // Compression against the same layer of run b (trained alike, so the same network):
    // every canonical correlation is 1.
    let spec: Vec<LayerSpec> = vec!["fc1".parse().unwrap()];
    let against = compression::compression(&a, &spec, &Reference::Run(b.clone()), None, None).unwrap();
    let corr = &against.layers[0].correlations;
    assert_eq!(corr.len(), against.layers[0].directions);
    assert!(corr.iter().all(|c| (c - 1.0).abs() < 1e-6), "{corr:?}");
    assert!(a.join("analysis/compression-run-b/compression.csv").exists());
    let pngs = svcca::report::findings::compare_runs_plot(&out, &c).unwrap();
    assert!(std::fs::read(&pngs[0]).unwrap().starts_with(b"\x89PNG"));
}

#[test]
fn cli_analyses_and_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = train(&tmp.path().join("run"), tiny(0.99, LAYERS));
    let d = dir.to_str().unwrap();
    assert_refused(&svcca(&["analyze", d, "--compression", "fc9"]), &["'fc9'", "c1 c2 bn1 p1"]);
    assert_refused(&svcca(&["analyze", d, "--compression", "fc1:1.5"]), &["(0, 1]"]);
    assert_refused(&svcca(&["analyze", d, "--classes", "3,x"]), &["'x'"]);
    // --classes-conv needs --classes, and is avgpool or flatten.
    assert_refused(&svcca(&["analyze", d, "--classes-conv", "flatten"]), &["required arguments"]);
    assert_refused(&svcca(&["analyze", d, "--classes", "3", "--classes-conv", "dft"]), &["'dft'"]);
    // --against needs --compression.
    assert_refused(&svcca(&["analyze", d, "--against", "logits"]), &[]);
    assert_refused(&svcca(&["compare-runs", d]), &[]);
    assert_refused(&svcca(&["compare-runs", d, tmp.path().to_str().unwrap()]), &["not a run folder"]);

    let out = svcca(&["analyze", d, "--dimensionality", "--compression", "fc1:0.25,logits"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("smallest k within 1 point") && text.contains("fc1:"), "{text}");
    let table = std::fs::read_to_string(dir.join("analysis/dimensionality.csv")).unwrap();
    assert_eq!(table.lines().next().unwrap(), "layer,units,rank,k90,k99");
    assert_eq!(table.lines().count(), 7);
    let dims: Vec<dimensionality::LayerDimensions> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("analysis/dimensionality.json")).unwrap()).unwrap();
    for l in &dims {
        assert!(l.k90 <= l.k99 && l.k99 <= l.rank && l.rank <= l.units, "{l:?}");
    }
    for f in ["compression-logits.png", "compression-logits.svg", "dimensionality.png", "dimensionality.svg"] {
        assert!(dir.join("plots").join(f).exists(), "{f}");
    }

    // --eval-images N: every accuracy counts out of N images (random: the mean of 3 draws);
    // N in settings.json; a rerun with another N is refused; more than the split too.
    let out = svcca(&["analyze", d, "--compression", "fc1", "--against", "step:10", "--eval-images", "50", "--no-plots"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let folder = dir.join("analysis/compression-step-10");
    let c: compression::Compression = serde_json::from_str(&std::fs::read_to_string(folder.join("compression.json")).unwrap()).unwrap();
    assert_eq!(c.settings.eval_images, Some(50));
    let whole = |a: f64, n: f64| ((a * n) - (a * n).round()).abs() < 1e-9;
    assert!(whole(c.full_accuracy, 50.0), "{}", c.full_accuracy);
    for p in &c.layers[0].points {
        let n = if p.method == Kept::Random { 150.0 } else { 50.0 };
        assert!(whole(p.accuracy, n), "{p:?}");
    }
    assert!(std::fs::read_to_string(folder.join("settings.json")).unwrap().contains("\"eval_images\": 50"));
    let again = |n: &str| svcca(&["analyze", d, "--compression", "fc1", "--against", "step:10", "--eval-images", n, "--no-plots"]);
    assert_refused(&again("60"), &["other settings"]);
    assert!(again("50").status.success());
    assert_refused(&again("201"), &["only 200 images"]);
    assert_refused(&svcca(&["analyze", d, "--eval-images", "50"]), &[]);
}
