//! G and D as PyTorch state dicts: the tensor names and layouts of the reference networks in
//! `tests/reference/torch_step.py`, where each network is a `torch.nn.Sequential`, so a layer
//! is named by its index there (`2.weight`, `4.running_mean`, ...).
//!
//! Layouts: PyTorch's `Conv2d` weight is `[out, in, 4, 4]` and its `ConvTranspose2d` weight
//! `[in, out, 4, 4]`, as dcgan keeps them; its `Linear` weight is `[out, in]`, the transpose of
//! burn's `[in, out]`. (Keras stores kernels height-first, `[4, 4, in, out]` for `Conv2D` and
//! `[4, 4, out, in]` for `Conv2DTranspose`: a Keras file needs those permuted.) Both presets
//! have the same shapes, so a file loads into either network. Other image sizes add or drop
//! blocks of three entries, numbered on in the same pattern.

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

/// Where each layer of G sits in the reference `Sequential`: `Linear` (0), `Unflatten`, then
/// per doubling `ConvTranspose2d`, `LeakyReLU`, `BatchNorm2d`, and the last `ConvTranspose2d`.
mod g_index {
    pub const FC: usize = 0;
    pub fn deconv(block: usize) -> usize {
        2 + 3 * block
    }
    pub fn bn(block: usize) -> usize {
        4 + 3 * block
    }
}

/// Where each layer of D sits: `Conv2d` (0), per halving with BatchNorm `Conv2d`,
/// `LeakyReLU`, `BatchNorm2d`, then `Conv2d`, `LeakyReLU`, `Flatten`, `Dropout`, `Linear`.
mod d_index {
    pub const CONV1: usize = 0;
    pub fn conv(block: usize) -> usize {
        1 + 3 * block
    }
    pub fn bn(block: usize) -> usize {
        3 + 3 * block
    }
    pub fn fc(blocks: usize) -> usize {
        conv(blocks) + 4
    }
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
    linear(&mut out, g_index::FC, &g.fc);
    for (k, b) in g.blocks.iter().enumerate() {
        conv(&mut out, g_index::deconv(k), &b.deconv);
        batch_norm(&mut out, g_index::bn(k), &b.bn);
    }
    conv(&mut out, g_index::deconv(g.blocks.len()), &g.to_rgb);
    out
}

/// D's weights and BatchNorm statistics under the reference discriminator's names.
pub fn discriminator_tensors<B: Backend>(d: &Discriminator<B>) -> Vec<NamedTensor> {
    let mut out = Vec::new();
    conv(&mut out, d_index::CONV1, &d.conv1);
    for (k, b) in d.blocks.iter().enumerate() {
        conv(&mut out, d_index::conv(k), &b.conv);
        batch_norm(&mut out, d_index::bn(k), &b.bn);
    }
    conv(&mut out, d_index::conv(d.blocks.len()), &d.to_4x4);
    linear(&mut out, d_index::fc(d.blocks.len()), &d.fc);
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
    l.linear(g_index::FC, &mut g.fc)?;
    for (k, b) in g.blocks.iter_mut().enumerate() {
        l.conv(g_index::deconv(k), &mut b.deconv)?;
        l.batch_norm(g_index::bn(k), &mut b.bn)?;
    }
    l.conv(g_index::deconv(g.blocks.len()), &mut g.to_rgb)?;
    Ok(g)
}

/// Like [`generator_from_tensors`], for D.
pub fn discriminator_from_tensors<B: Backend>(
    mut d: Discriminator<B>,
    tensors: &[NamedTensor],
    origin: &str,
) -> Result<Discriminator<B>> {
    let l = Lookup::new(tensors, origin);
    l.conv(d_index::CONV1, &mut d.conv1)?;
    for (k, b) in d.blocks.iter_mut().enumerate() {
        l.conv(d_index::conv(k), &mut b.conv)?;
        l.batch_norm(d_index::bn(k), &mut b.bn)?;
    }
    l.conv(d_index::conv(d.blocks.len()), &mut d.to_4x4)?;
    l.linear(d_index::fc(d.blocks.len()), &mut d.fc)?;
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
        let g = cfg.generator.init::<Flex>(cfg.image_size, 3, &device);
        let d = cfg.discriminator.init::<Flex>(cfg.image_size, 4, &device);
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
        let fresh = cfg.generator.init::<Flex>(cfg.image_size, 99, &device);
        let g2 = generator_from_tensors(fresh, &back, "g.safetensors").unwrap();
        assert_eq!(generator_tensors(&g2), gt, "exact round trip");

        let path = temp("d.safetensors");
        write_state_dict(&path, &dt).unwrap();
        let back = read_state_dict(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let fresh = cfg.discriminator.init::<Flex>(cfg.image_size, 99, &device);
        let d2 = discriminator_from_tensors(fresh, &back, "d.safetensors").unwrap();
        assert_eq!(discriminator_tensors(&d2), dt, "exact round trip");
    }

    #[test]
    fn a_missing_or_misshapen_tensor_is_refused_by_name() {
        let cfg = Preset::Dcgan.config();
        let device = Default::default();
        let template = || cfg.generator.init::<Flex>(cfg.image_size, 0, &device);
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
        let d = discriminator_tensors(&cfg.discriminator.init::<Flex>(cfg.image_size, 0, &device));
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
