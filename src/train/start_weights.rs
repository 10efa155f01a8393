//! `train --init-from`: G and D start from weights saved elsewhere (`dcgan export`, or a
//! PyTorch state dict of the reference networks, as safetensors or `.pt`) instead of the
//! config's initialiser.

use std::path::PathBuf;

use anyhow::{bail, Result};

use burn::tensor::backend::Backend;

use crate::config::TrainingConfig;
use crate::nn::torch_names::{self, NamedTensor};
use crate::nn::{Discriminator, Generator};
use crate::run::read_state_dict;

/// One network's tensors, and the file they came from (for error messages).
pub struct Named {
    pub tensors: Vec<NamedTensor>,
    pub origin: String,
}

/// The networks `--init-from` gave; either may be absent.
#[derive(Default)]
pub struct StartWeights {
    pub g: Option<Named>,
    pub d: Option<Named>,
}

/// G's first tensor is its `Linear` weight, [4 * 4 * channels, noise]: the channels at 4x4 are
/// 256, 512 or 1024 for 32-, 64- or 128-pixel faces, the noise size is the config's.
const G_FIRST_ROWS: [usize; 3] = [4096, 8192, 16384];
/// D's first convolution is the same at every size.
const D_FIRST: [usize; 4] = [32, 3, 4, 4];

impl StartWeights {
    /// Reads each file and sorts its tensors into G's and D's: a file holds one network
    /// (recognised by the shape of its `0.weight`), or both under `g.` and `d.` prefixes.
    pub fn read(paths: &[PathBuf]) -> Result<Self> {
        let mut out = Self::default();
        for path in paths {
            let tensors = read_state_dict(path)?;
            let origin = path.display().to_string();
            let prefixed = |p: &str| -> Vec<NamedTensor> {
                (tensors.iter())
                    .filter_map(|t| {
                        let name = t.name.strip_prefix(p)?.to_string();
                        Some(NamedTensor { name, ..t.clone() })
                    })
                    .collect()
            };
            let (g, d) = (prefixed("g."), prefixed("d."));
            if !g.is_empty() || !d.is_empty() {
                out.put(true, g, &origin)?;
                out.put(false, d, &origin)?;
                continue;
            }
            let first = tensors.iter().find(|t| t.name == "0.weight");
            match first.map(|t| t.shape.as_slice()) {
                Some(&[rows, _]) if G_FIRST_ROWS.contains(&rows) => {
                    out.put(true, tensors, &origin)?
                }
                Some(s) if s == D_FIRST => out.put(false, tensors, &origin)?,
                other => bail!(
                    "{origin}: not a state dict of G or D: its `0.weight` is {} (G's is [N, noise size] \
                     with N one of {G_FIRST_ROWS:?}, D's {D_FIRST:?})\n  give a file written by \
                     `dcgan export`, or a PyTorch state dict of the reference networks \
                     (tests/reference/torch_step.py)",
                    other.map_or("missing".to_string(), |s| format!("{s:?}"))
                ),
            }
        }
        Ok(out)
    }

    /// `g` and `d` with the given networks' weights in place of theirs. The first tensor
    /// missing or of the wrong shape is an error naming it and its file.
    pub fn apply<B: Backend>(
        &self,
        g: Generator<B>,
        d: Discriminator<B>,
    ) -> Result<(Generator<B>, Discriminator<B>)> {
        let g = match &self.g {
            Some(w) => torch_names::generator_from_tensors(g, &w.tensors, &w.origin)?,
            None => g,
        };
        let d = match &self.d {
            Some(w) => torch_names::discriminator_from_tensors(d, &w.tensors, &w.origin)?,
            None => d,
        };
        Ok((g, d))
    }

    /// Applies the weights to fresh networks of `cfg`'s, so that a missing or misshapen
    /// tensor is reported before any data is decoded or anything is written.
    pub fn check<B: Backend>(&self, cfg: &TrainingConfig, device: &B::Device) -> Result<()> {
        if self.g.is_none() && self.d.is_none() {
            return Ok(());
        }
        let g = cfg.generator.init::<B>(cfg.image_size, 0, device);
        self.apply(g, cfg.discriminator.init::<B>(cfg.image_size, 0, device))
            .map(drop)
    }

    fn put(&mut self, is_g: bool, tensors: Vec<NamedTensor>, origin: &str) -> Result<()> {
        if tensors.is_empty() {
            return Ok(());
        }
        let (slot, name) = if is_g {
            (&mut self.g, "G")
        } else {
            (&mut self.d, "D")
        };
        if let Some(earlier) = slot {
            bail!(
                "--init-from: both {} and {origin} hold {name}'s weights; give one file per network",
                earlier.origin
            );
        }
        *slot = Some(Named {
            tensors,
            origin: origin.to_string(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EmaConfig, TrainingConfig};
    use crate::nn::torch_names::{discriminator_tensors, generator_tensors};
    use crate::run::safetensors::write_state_dict;
    use crate::train::Gan;
    use burn::backend::{Autodiff, Flex};
    use burn::module::AutodiffModule;

    type B = Autodiff<Flex>;

    fn path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("dcgan-start-{}-{name}", std::process::id()))
    }

    /// G from a plain file and D from a file with `d.` names start the run exactly, and the
    /// moving average of G starts from the loaded G, not the initialiser's.
    #[test]
    fn init_from_loads_both_networks_exactly() {
        let mut cfg = TrainingConfig::preset("dcgan").unwrap();
        cfg.ema = Some(EmaConfig { decay: 0.999 });
        cfg.seed = 5;
        let source = Gan::<B>::new(&cfg, &Default::default());
        let (g_file, d_file) = (path("g.safetensors"), path("both.safetensors"));
        write_state_dict(&g_file, &generator_tensors(&source.g)).unwrap();
        let d_prefixed: Vec<NamedTensor> = discriminator_tensors(&source.d)
            .into_iter()
            .map(|t| NamedTensor {
                name: format!("d.{}", t.name),
                ..t
            })
            .collect();
        write_state_dict(&d_file, &d_prefixed).unwrap();

        cfg.seed = 42;
        let fresh = Gan::<B>::new(&cfg, &Default::default());
        assert_ne!(generator_tensors(&fresh.g), generator_tensors(&source.g));
        let weights = StartWeights::read(&[g_file.clone(), d_file.clone()]).unwrap();
        let gan = fresh.with_start(&cfg, &weights).unwrap();
        assert_eq!(generator_tensors(&gan.g), generator_tensors(&source.g));
        assert_eq!(
            discriminator_tensors(&gan.d),
            discriminator_tensors(&source.d)
        );
        let ema = gan.ema.as_ref().expect("the config keeps an average");
        assert_eq!(
            generator_tensors(&ema.g),
            generator_tensors(&source.g.valid())
        );

        // The same file twice, a file of no state-dict kind, and a file of neither network
        // are refused by name.
        let twice = StartWeights::read(&[g_file.clone(), g_file.clone()])
            .err()
            .unwrap();
        assert!(
            twice.to_string().contains("give one file per network"),
            "{twice}"
        );
        let npz = path("g.npz");
        std::fs::write(&npz, b"PK").unwrap();
        let e = StartWeights::read(std::slice::from_ref(&npz))
            .err()
            .unwrap();
        assert!(
            e.to_string().contains("g.npz: not a state dict file"),
            "{e}"
        );
        let other = path("other.safetensors");
        let mut wrong = generator_tensors(&source.g);
        wrong[0].shape = vec![100, 8192];
        write_state_dict(&other, &wrong).unwrap();
        let e = StartWeights::read(std::slice::from_ref(&other))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("other.safetensors") && e.contains("[100, 8192]"),
            "{e}"
        );
        for f in [g_file, d_file, other, npz] {
            std::fs::remove_file(f).unwrap();
        }
    }
}
