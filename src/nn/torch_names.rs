//! G and D as PyTorch state dicts: the tensor names and layouts of the reference networks in
//! `tests/reference/torch_step.py`, where each network is a `torch.nn.Sequential`, so a layer
//! is named by its index there (`2.weight`, `4.running_mean`, ...).
//!
//! Layouts: PyTorch's `Conv2d` weight is `[out, in, 4, 4]` and its `ConvTranspose2d` weight
//! `[in, out, 4, 4]`, as dcgan keeps them; its `Linear` weight is `[out, in]`, the transpose of
//! burn's `[in, out]`. (Keras stores kernels height-first, `[4, 4, in, out]` for `Conv2D` and
//! `[4, 4, out, in]` for `Conv2DTranspose`: a Keras file needs those permuted.) Both presets
//! have the same shapes, so a file loads into either network.

use std::collections::HashMap;

use anyhow::{bail, Result};
use burn::module::{Param, RunningState};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::{BatchNorm, Discriminator, Generator};
use crate::nn::layer::Conv;

/// One named float tensor, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl NamedTensor {
    fn of<B: Backend, const D: usize>(name: String, t: Tensor<B, D>) -> Self {
        let shape = t.dims().to_vec();
        let data = t.into_data().to_vec::<f32>().expect("f32 weights");
        Self { name, shape, data }
    }
}

/// PyTorch's `Sequential` index of each layer, in order: (index, layer).
const G_LAYERS: [(usize, &str); 8] = [
    (0, "fc"),
    (2, "deconv1"),
    (4, "bn1"),
    (5, "deconv2"),
    (7, "bn2"),
    (8, "deconv3"),
    (10, "bn3"),
    (11, "deconv4"),
];
const D_LAYERS: [(usize, &str); 7] = [
    (0, "conv1"),
    (1, "conv2"),
    (3, "bn2"),
    (4, "conv3"),
    (6, "bn3"),
    (7, "conv4"),
    (11, "fc"),
];

fn index(layers: &[(usize, &str)], layer: &str) -> usize {
    layers
        .iter()
        .find(|(_, l)| *l == layer)
        .expect("a known layer")
        .0
}

fn conv<B: Backend>(out: &mut Vec<NamedTensor>, i: usize, c: &Conv<B>) {
    out.push(NamedTensor::of(format!("{i}.weight"), c.weight.val()));
    out.push(NamedTensor::of(format!("{i}.bias"), c.bias.val()));
}

/// The running statistics are read synced: `value()` can lag one update behind on a module
/// that is still training.
fn batch_norm<B: Backend>(out: &mut Vec<NamedTensor>, i: usize, bn: &BatchNorm<B>) {
    out.push(NamedTensor::of(format!("{i}.weight"), bn.gamma.val()));
    out.push(NamedTensor::of(format!("{i}.bias"), bn.beta.val()));
    out.push(NamedTensor::of(
        format!("{i}.running_mean"),
        bn.running_mean.value_sync(),
    ));
    out.push(NamedTensor::of(
        format!("{i}.running_var"),
        bn.running_var.value_sync(),
    ));
}

fn linear<B: Backend>(out: &mut Vec<NamedTensor>, i: usize, fc: &burn::nn::Linear<B>) {
    out.push(NamedTensor::of(
        format!("{i}.weight"),
        fc.weight.val().transpose(),
    ));
    let bias = fc
        .bias
        .as_ref()
        .expect("the networks' linear layers have a bias");
    out.push(NamedTensor::of(format!("{i}.bias"), bias.val()));
}

/// G's weights and BatchNorm statistics under the reference generator's names.
pub fn generator_tensors<B: Backend>(g: &Generator<B>) -> Vec<NamedTensor> {
    let mut out = Vec::new();
    let at = |l| index(&G_LAYERS, l);
    linear(&mut out, at("fc"), &g.fc);
    conv(&mut out, at("deconv1"), &g.deconv1);
    batch_norm(&mut out, at("bn1"), &g.bn1);
    conv(&mut out, at("deconv2"), &g.deconv2);
    batch_norm(&mut out, at("bn2"), &g.bn2);
    conv(&mut out, at("deconv3"), &g.deconv3);
    batch_norm(&mut out, at("bn3"), &g.bn3);
    conv(&mut out, at("deconv4"), &g.deconv4);
    out
}

/// D's weights and BatchNorm statistics under the reference discriminator's names.
pub fn discriminator_tensors<B: Backend>(d: &Discriminator<B>) -> Vec<NamedTensor> {
    let mut out = Vec::new();
    let at = |l| index(&D_LAYERS, l);
    conv(&mut out, at("conv1"), &d.conv1);
    conv(&mut out, at("conv2"), &d.conv2);
    batch_norm(&mut out, at("bn2"), &d.bn2);
    conv(&mut out, at("conv3"), &d.conv3);
    batch_norm(&mut out, at("bn3"), &d.bn3);
    conv(&mut out, at("conv4"), &d.conv4);
    linear(&mut out, at("fc"), &d.fc);
    out
}

/// Looks tensors up by name, checking each against the shape the network needs.
struct Lookup<'a> {
    by_name: HashMap<&'a str, &'a NamedTensor>,
    origin: &'a str,
}

impl<'a> Lookup<'a> {
    fn new(tensors: &'a [NamedTensor], origin: &'a str) -> Self {
        let by_name = tensors.iter().map(|t| (t.name.as_str(), t)).collect();
        Self { by_name, origin }
    }

    fn take<B: Backend, const D: usize>(
        &self,
        name: &str,
        like: Tensor<B, D>,
    ) -> Result<Tensor<B, D>> {
        let want = like.dims();
        let Some(t) = self.by_name.get(name) else {
            bail!(
                "{}: no tensor named {name} (expected the state dict of the reference network \
                 in tests/reference/torch_step.py, with shape {want:?})",
                self.origin
            );
        };
        if t.shape != want {
            bail!(
                "{}: tensor {name} has shape {:?}, expected {want:?}; is this the other network, \
                 or another architecture?",
                self.origin,
                t.shape
            );
        }
        Ok(Tensor::from_data(
            TensorData::new(t.data.clone(), want),
            &like.device(),
        ))
    }

    fn conv<B: Backend>(&self, i: usize, c: &mut Conv<B>) -> Result<()> {
        c.weight = Param::from_tensor(self.take(&format!("{i}.weight"), c.weight.val())?);
        c.bias = Param::from_tensor(self.take(&format!("{i}.bias"), c.bias.val())?);
        Ok(())
    }

    fn batch_norm<B: Backend>(&self, i: usize, bn: &mut BatchNorm<B>) -> Result<()> {
        bn.gamma = Param::from_tensor(self.take(&format!("{i}.weight"), bn.gamma.val())?);
        bn.beta = Param::from_tensor(self.take(&format!("{i}.bias"), bn.beta.val())?);
        let mean = self.take(&format!("{i}.running_mean"), bn.running_mean.value())?;
        let var = self.take(&format!("{i}.running_var"), bn.running_var.value())?;
        bn.running_mean = RunningState::new(mean);
        bn.running_var = RunningState::new(var);
        Ok(())
    }

    fn linear<B: Backend>(&self, i: usize, fc: &mut burn::nn::Linear<B>) -> Result<()> {
        let w = self.take(&format!("{i}.weight"), fc.weight.val().transpose())?;
        fc.weight = Param::from_tensor(w.transpose());
        if let Some(bias) = fc.bias.as_mut() {
            *bias = Param::from_tensor(self.take(&format!("{i}.bias"), bias.val())?);
        }
        Ok(())
    }
}

/// `g` with every weight and statistic replaced by the tensor of the same name in `tensors`;
/// the first one missing or of the wrong shape is an error naming it and `origin`.
pub fn generator_from_tensors<B: Backend>(
    mut g: Generator<B>,
    tensors: &[NamedTensor],
    origin: &str,
) -> Result<Generator<B>> {
    let l = Lookup::new(tensors, origin);
    let at = |layer| index(&G_LAYERS, layer);
    l.linear(at("fc"), &mut g.fc)?;
    l.conv(at("deconv1"), &mut g.deconv1)?;
    l.batch_norm(at("bn1"), &mut g.bn1)?;
    l.conv(at("deconv2"), &mut g.deconv2)?;
    l.batch_norm(at("bn2"), &mut g.bn2)?;
    l.conv(at("deconv3"), &mut g.deconv3)?;
    l.batch_norm(at("bn3"), &mut g.bn3)?;
    l.conv(at("deconv4"), &mut g.deconv4)?;
    Ok(g)
}

/// Like [`generator_from_tensors`], for D.
pub fn discriminator_from_tensors<B: Backend>(
    mut d: Discriminator<B>,
    tensors: &[NamedTensor],
    origin: &str,
) -> Result<Discriminator<B>> {
    let l = Lookup::new(tensors, origin);
    let at = |layer| index(&D_LAYERS, layer);
    l.conv(at("conv1"), &mut d.conv1)?;
    l.conv(at("conv2"), &mut d.conv2)?;
    l.batch_norm(at("bn2"), &mut d.bn2)?;
    l.conv(at("conv3"), &mut d.conv3)?;
    l.batch_norm(at("bn3"), &mut d.bn3)?;
    l.conv(at("conv4"), &mut d.conv4)?;
    l.linear(at("fc"), &mut d.fc)?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Preset;
    use crate::run::safetensors::{read_state_dict, write_state_dict};
    use burn::backend::Flex;

    fn temp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("dcgan-{}-{name}", std::process::id()))
    }

    #[test]
    fn generator_and_discriminator_round_trip_exactly_through_safetensors() {
        let cfg = Preset::Notebook.config();
        let device = Default::default();
        let g = cfg.generator.init::<Flex>(3, &device);
        let d = cfg.discriminator.init::<Flex>(4, &device);
        let (gt, dt) = (generator_tensors(&g), discriminator_tensors(&d));
        assert_eq!(gt[0].name, "0.weight");
        assert_eq!(
            gt[0].shape,
            vec![4 * 4 * 512, 100],
            "PyTorch's Linear is [out, in]"
        );
        assert!(gt
            .iter()
            .any(|t| t.name == "4.running_var" && t.shape == vec![256]));
        assert_eq!(dt.last().unwrap().name, "11.bias");

        let path = temp("g.safetensors");
        write_state_dict(&path, &gt).unwrap();
        let back = read_state_dict(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let fresh = cfg.generator.init::<Flex>(99, &device);
        let g2 = generator_from_tensors(fresh, &back, "g.safetensors").unwrap();
        assert_eq!(generator_tensors(&g2), gt, "exact round trip");

        let path = temp("d.safetensors");
        write_state_dict(&path, &dt).unwrap();
        let back = read_state_dict(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let fresh = cfg.discriminator.init::<Flex>(99, &device);
        let d2 = discriminator_from_tensors(fresh, &back, "d.safetensors").unwrap();
        assert_eq!(discriminator_tensors(&d2), dt, "exact round trip");
    }

    #[test]
    fn a_missing_or_misshapen_tensor_is_refused_by_name() {
        let cfg = Preset::Dcgan.config();
        let device = Default::default();
        let template = || cfg.generator.init::<Flex>(0, &device);
        let mut tensors = generator_tensors(&template());

        tensors.retain(|t| t.name != "7.running_mean");
        let err = generator_from_tensors(template(), &tensors, "x.safetensors").unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("x.safetensors") && err.contains("no tensor named 7.running_mean"),
            "{err}"
        );

        let mut tensors = generator_tensors(&template());
        tensors[2].shape = vec![256, 512, 4, 4];
        let err = format!(
            "{:#}",
            generator_from_tensors(template(), &tensors, "x").unwrap_err()
        );
        assert!(
            err.contains("tensor 2.weight has shape [256, 512, 4, 4], expected [512, 256, 4, 4]"),
            "{err}"
        );

        // A discriminator's file given as a generator: its first tensor has the wrong shape.
        let d = discriminator_tensors(&cfg.discriminator.init::<Flex>(0, &device));
        let err = format!(
            "{:#}",
            generator_from_tensors(template(), &d, "d").unwrap_err()
        );
        assert!(
            err.contains("tensor 0.weight has shape [32, 3, 4, 4]"),
            "{err}"
        );
    }
}
