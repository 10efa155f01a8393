//! Turns the per-epoch preview grids (`RUN/samples/epoch_NNNN.png`) into one animated GIF,
//! each frame captioned "epoch N", so a run's progress can be watched as a loop.
//!
//! Speed is the constraint: a run may have 300 epochs of 530x530 grids (1042x1042 at 128px
//! faces) and this must finish in seconds on a 2-core machine. Colour quantisation and LZW
//! compression are the costly steps and each frame's are independent of the others, so both
//! run per frame in parallel on rayon; only the concatenation of the compressed frames is
//! sequential. Frames are kept at native size: the faces are small already and downscaling
//! would hide exactly the detail being watched.
//!
//! Quantisation is NeuQuant (`color_quant`, the quantiser the `gif` crate itself uses) for
//! the 256-colour palette, but pixels are mapped to it through a lookup table over 5-bit
//! colour cells rather than NeuQuant's per-pixel search. Measured on synthetic noisy 530x530
//! face-like grids (one core's CPU time): the search took ~23 ms a frame, more than the
//! learning (~18 ms), the table ~2 ms, for a mean error of 4.62 instead of 4.41 levels (0-255)
//! with the same palette.
//!
//! Paths to the `gif` crate are written `::gif::`, plainly the crate and not a module.

use std::path::{Path, PathBuf};

use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use anyhow::{anyhow, bail, Context, Result};
use rayon::prelude::*;

/// NeuQuant's sampling factor, 1 (learns from every pixel: best, slowest) to 30. Learning is
/// most of a frame's time; on the noisy face-like grids above, 15 learnt in ~11 ms against
/// ~18 ms at 10 (the crates' suggested value), for a mean error of 4.68 against 4.62 levels.
const QUANT_SPEED: i32 = 15;

/// Bits per channel of the colour cells that share one palette index (see [`quantise`]).
const CELL_BITS: u32 = 5;

/// How long the last frame stays up, so a viewer sees the final result before the loop
/// restarts.
const HOLD_LAST_MS: u32 = 2000;

/// One frame per (epoch, png path), in the given order; writes the GIF bytes.
///
/// Every PNG must have the first one's size; each frame is that grid with a black strip on
/// top carrying "epoch N" in white. Frames last `frame_ms` (GIF stores centiseconds, and
/// viewers slow anything under 20 ms down, so it is rounded and kept at least 20 ms); the last
/// frame lasts at least [`HOLD_LAST_MS`] and always longer than the others. The GIF loops
/// forever.
pub fn encode_gif(frames: &[(usize, PathBuf)], font: &[u8], frame_ms: u16) -> Result<Vec<u8>> {
    let Some((_, first)) = frames.first() else {
        bail!("no preview images to animate: train for at least one epoch first");
    };
    // The header alone gives the size every frame must match, without decoding the image.
    let grid = image::image_dimensions(first)
        .with_context(|| format!("cannot read preview image {}", first.display()))?;
    let font = FontRef::try_from_slice(font).map_err(|e| anyhow!("cannot parse the font: {e}"))?;
    let caption = Caption::new(&font, grid.0);
    let (width, height) = gif_size(grid.0, grid.1 + caption.strip_h)?;
    let (delay, last_delay) = delays_cs(frame_ms);

    let encoded: Vec<::gif::Frame<'static>> = frames
        .par_iter()
        .enumerate()
        .map(|(i, (epoch, path))| {
            let mut frame = build_frame(path, *epoch, grid, &caption)?;
            frame.delay = if i + 1 == frames.len() {
                last_delay
            } else {
                delay
            };
            Ok(frame)
        })
        .collect::<Result<_>>()?;
    write_gif(&encoded, width, height)
}

/// Reads one grid, checks its size, adds the caption strip, then quantises and
/// LZW-compresses it: everything per frame that is worth running in parallel.
fn build_frame(
    path: &Path,
    epoch: usize,
    grid: (u32, u32),
    caption: &Caption<'_>,
) -> Result<::gif::Frame<'static>> {
    let rgb = read_grid(path, grid)?;
    let (w, h) = (grid.0 as usize, (grid.1 + caption.strip_h) as usize);
    // RGBA because that is what NeuQuant reads. Opaque black: the strip stays black behind
    // the text, the grid is copied in below it.
    let mut canvas = [0, 0, 0, 255].repeat(w * h);
    let strip_px = w * caption.strip_h as usize;
    for (dst, src) in canvas[strip_px * 4..]
        .chunks_exact_mut(4)
        .zip(rgb.as_raw().chunks_exact(3))
    {
        dst[..3].copy_from_slice(src);
    }
    caption.draw(&mut canvas, w, &format!("epoch {epoch}"));

    let (indices, palette) = quantise(&canvas);
    let mut frame = ::gif::Frame::from_palette_pixels(w as u16, h as u16, indices, palette, None);
    frame.make_lzw_pre_encoded();
    Ok(frame)
}

/// Reduces opaque RGBA pixels to 256 colours: (one palette index per pixel, RGB palette).
///
/// A frame with at most 256 colours keeps them exactly. Otherwise NeuQuant learns the
/// palette from a sample of the pixels, and each pixel takes the palette entry nearest the
/// centre of its 5-bit-per-channel colour cell, looked up once per cell that occurs (a few
/// thousand in a face grid) instead of once per pixel (300,000).
fn quantise(rgba: &[u8]) -> (Vec<u8>, Vec<u8>) {
    if let Some(exact) = exact_palette(rgba) {
        return exact;
    }
    let nq = color_quant::NeuQuant::new(QUANT_SPEED, 256, rgba);
    let shift = 8 - CELL_BITS;
    let centre = 1u8 << (shift - 1);
    let mut table = vec![u16::MAX; 1 << (3 * CELL_BITS)];
    let indices = rgba
        .chunks_exact(4)
        .map(|px| {
            let cell = |c: u8| (c >> shift) as usize;
            let key = (cell(px[0]) << (2 * CELL_BITS)) | (cell(px[1]) << CELL_BITS) | cell(px[2]);
            let slot = &mut table[key];
            if *slot == u16::MAX {
                let mid = |c: u8| (c >> shift << shift) | centre;
                *slot = nq.index_of(&[mid(px[0]), mid(px[1]), mid(px[2]), 255]) as u16;
            }
            *slot as u8
        })
        .collect();
    (indices, nq.color_map_rgb())
}

/// The lossless palette of a frame with at most 256 colours, else `None`. NeuQuant can
/// merge or shift colours even when few are present (flat test patterns, a collapsed
/// generator's output); a real face grid passes 256 colours within its first rows, so the
/// check costs next to nothing there.
fn exact_palette(rgba: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut seen = std::collections::HashMap::<[u8; 3], u8>::with_capacity(256);
    let mut palette = Vec::with_capacity(256 * 3);
    let mut indices = Vec::with_capacity(rgba.len() / 4);
    for px in rgba.chunks_exact(4) {
        let rgb = [px[0], px[1], px[2]];
        let next = seen.len();
        let index = *seen.entry(rgb).or_insert_with(|| {
            palette.extend_from_slice(&rgb);
            next.min(255) as u8
        });
        if seen.len() > 256 {
            return None;
        }
        indices.push(index);
    }
    Some((indices, palette))
}

/// Decodes a preview PNG to RGB, naming the file in any error, and rejects one whose size
/// differs from the first frame's: a GIF has one canvas size and mixing grid sizes (a run
/// resumed at another image size) would otherwise give a garbled animation.
fn read_grid(path: &Path, expected: (u32, u32)) -> Result<image::RgbImage> {
    let img = image::open(path)
        .with_context(|| format!("cannot read preview image {}", path.display()))?
        .into_rgb8();
    if img.dimensions() != expected {
        bail!(
            "preview image {} is {}x{}, but the first frame is {}x{}: all frames of a GIF \
             must share one size",
            path.display(),
            img.width(),
            img.height(),
            expected.0,
            expected.1
        );
    }
    Ok(img)
}

/// Checks the canvas fits GIF's 16-bit dimensions.
fn gif_size(width: u32, height: u32) -> Result<(u16, u16)> {
    match (u16::try_from(width), u16::try_from(height)) {
        (Ok(w), Ok(h)) => Ok((w, h)),
        _ => bail!("a {width}x{height} frame is too large for a GIF (65535 pixels a side at most)"),
    }
}

/// Frame delays in centiseconds: (every frame but the last, the last).
fn delays_cs(frame_ms: u16) -> (u16, u16) {
    let cs = ((u32::from(frame_ms) + 5) / 10).max(2);
    let last = (HOLD_LAST_MS / 10).max(cs * 2);
    (cs as u16, last.min(u32::from(u16::MAX)) as u16)
}

/// Writes the already compressed frames with local palettes (each frame has its own 256
/// colours, which suits grids whose colours drift over training) and an endless loop.
fn write_gif(frames: &[::gif::Frame<'static>], width: u16, height: u16) -> Result<Vec<u8>> {
    let bytes: usize = frames.iter().map(|f| f.buffer.len() + 800).sum();
    let mut enc = ::gif::Encoder::new(Vec::with_capacity(bytes), width, height, &[])
        .context("cannot start the GIF")?;
    enc.set_repeat(::gif::Repeat::Infinite)
        .context("cannot write the GIF loop flag")?;
    for frame in frames {
        enc.write_lzw_pre_encoded_frame(frame)
            .context("cannot write a GIF frame")?;
    }
    enc.into_inner().context("cannot finish the GIF")
}

/// The caption strip's layout for a given grid width: text scaled with the grid so it reads
/// alike at 32, 64 and 128px faces, and never below 14px, where DejaVu Sans Mono stays legible.
struct Caption<'f> {
    font: &'f FontRef<'f>,
    scale: PxScale,
    strip_h: u32,
    left: f32,
    baseline: f32,
}

impl<'f> Caption<'f> {
    fn new(font: &'f FontRef<'f>, grid_width: u32) -> Self {
        let px = (grid_width as f32 / 22.0).clamp(14.0, 48.0).round();
        let scale = PxScale::from(px);
        let scaled = font.as_scaled(scale);
        let text_h = scaled.ascent() - scaled.descent();
        let strip_h = (px * 1.5).ceil() as u32;
        // Centre the line (ascender to descender) vertically in the strip.
        let baseline = ((strip_h as f32 - text_h) / 2.0 + scaled.ascent()).round();
        Caption {
            font,
            scale,
            strip_h,
            left: (px / 2.0).round(),
            baseline,
        }
    }

    /// Draws `text` in white, anti-aliased, on the (black) strip at the top of an RGBA
    /// `canvas` `width` pixels wide; glyphs are clipped to the strip.
    fn draw(&self, canvas: &mut [u8], width: usize, text: &str) {
        let scaled = self.font.as_scaled(self.scale);
        let mut x = self.left;
        for c in text.chars() {
            let mut glyph = scaled.scaled_glyph(c);
            glyph.position = ab_glyph::point(x, self.baseline);
            x += scaled.h_advance(glyph.id);
            let Some(outline) = self.font.outline_glyph(glyph) else {
                continue;
            };
            let b = outline.px_bounds();
            outline.draw(|gx, gy, cov| {
                let (px, py) = (b.min.x as i64 + gx as i64, b.min.y as i64 + gy as i64);
                if px < 0 || py < 0 || px >= width as i64 || py >= self.strip_h as i64 {
                    return;
                }
                let v = (cov.clamp(0.0, 1.0) * 255.0).round() as u8;
                let i = (py as usize * width + px as usize) * 4;
                for ch in &mut canvas[i..i + 3] {
                    *ch = (*ch).max(v);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");

    /// A fresh, empty folder per test (no tempfile crate in the deps).
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dcgan-gif-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The real preview layout (`data::grid`): an 8x8 grid of `cell`px squares with 2px black
    /// gaps and border; square (r, c) is filled by `color(r, c, x, y)`.
    fn grid_png(path: &Path, cell: u32, color: impl Fn(u32, u32, u32, u32) -> [u8; 3]) {
        let side = 8 * cell + 9 * 2;
        let img = image::RgbImage::from_fn(side, side, |x, y| {
            let (x, y) = (x.wrapping_sub(2), y.wrapping_sub(2));
            let (c, r, ox, oy) = (
                x / (cell + 2),
                y / (cell + 2),
                x % (cell + 2),
                y % (cell + 2),
            );
            if x >= 8 * (cell + 2) || y >= 8 * (cell + 2) || ox >= cell || oy >= cell {
                image::Rgb([0, 0, 0])
            } else {
                image::Rgb(color(r, c, ox, oy))
            }
        });
        img.save(path).unwrap();
    }

    /// Solid, distinct colours per square and per frame.
    fn solid(frame: u32) -> impl Fn(u32, u32, u32, u32) -> [u8; 3] {
        move |r, c, _, _| {
            [
                (40 + r * 25) as u8,
                (40 + c * 25) as u8,
                (60 + frame * 60) as u8,
            ]
        }
    }

    /// Decodes a GIF to (width, height, repeat, [(delay, RGBA pixels)]).
    fn decode(bytes: &[u8]) -> (u16, u16, ::gif::Repeat, Vec<(u16, Vec<u8>)>) {
        let mut opts = ::gif::DecodeOptions::new();
        opts.set_color_output(::gif::ColorOutput::RGBA);
        let mut dec = opts.read_info(bytes).unwrap();
        let (w, h) = (dec.width(), dec.height());
        let mut out = Vec::new();
        while let Some(f) = dec.read_next_frame().unwrap() {
            assert_eq!(
                (f.left, f.top, f.width, f.height),
                (0, 0, w, h),
                "full-canvas frames"
            );
            out.push((f.delay, f.buffer.to_vec()));
        }
        (w, h, dec.repeat(), out)
    }

    #[test]
    fn three_frames_captioned_with_source_colours() {
        let dir = scratch("three");
        let frames: Vec<(usize, PathBuf)> = (0..3u32)
            .map(|i| {
                let p = dir.join(format!("epoch_{:04}.png", i + 1));
                grid_png(&p, 64, solid(i));
                (i as usize + 1, p)
            })
            .collect();
        let bytes = encode_gif(&frames, FONT, 100).unwrap();
        let (w, h, repeat, decoded) = decode(&bytes);

        let strip = FONT_STRIP_530;
        assert_eq!((w as u32, h as u32), (530, 530 + strip));
        assert_eq!(repeat, ::gif::Repeat::Infinite);
        assert_eq!(decoded.len(), 3);
        assert_eq!(decoded[0].0, 10);
        assert_eq!(decoded[1].0, 10);
        assert!(decoded[2].0 >= 200, "last frame held: {} cs", decoded[2].0);

        let strip_px = |buf: &[u8]| buf[..(530 * strip * 4) as usize].to_vec();
        for (_, buf) in &decoded {
            let light = strip_px(buf)
                .chunks(4)
                .filter(|p| p[0] > 200 && p[1] > 200)
                .count();
            assert!(light > 50, "caption has {light} light pixels");
        }
        assert_ne!(
            strip_px(&decoded[0].1),
            strip_px(&decoded[1].1),
            "epoch number changes"
        );

        for (i, (_, buf)) in decoded.iter().enumerate() {
            let want = solid(i as u32);
            for (r, c) in [(0, 0), (3, 5), (7, 7), (5, 1)] {
                let (x, y) = (2 + c * 66 + 32, 2 + r * 66 + 32 + strip);
                let p = &buf[((y * 530 + x) * 4) as usize..][..3];
                let s = want(r, c, 0, 0);
                for k in 0..3 {
                    assert!(
                        p[k].abs_diff(s[k]) <= 12,
                        "frame {i} ({r},{c}): {p:?} vs {s:?}"
                    );
                }
            }
            // A gap pixel stays black.
            let gap = &buf[(((2 + 64 + strip) * 530 + 10) * 4) as usize..][..3];
            assert!(gap.iter().all(|&v| v < 16), "gap {gap:?}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Strip height at a 530px grid: 24px text, 1.5 lines.
    const FONT_STRIP_530: u32 = 36;

    #[test]
    fn smooth_faces_survive_neuquant() {
        // Gradients give thousands of colours, far more than the 256 a frame can keep: the
        // palette and the cell lookup must still land close to every source pixel.
        let dir = scratch("smooth");
        let p = dir.join("epoch_0001.png");
        let shade = |r: u32, c: u32, x: u32, y: u32| {
            [
                (x * 4 + r * 8) as u8,
                (y * 3 + c * 10) as u8,
                ((x + y) * 2) as u8,
            ]
        };
        grid_png(&p, 32, shade);
        let bytes = encode_gif(&[(7, p.clone())], FONT, 80).unwrap();
        let (w, h, _, decoded) = decode(&bytes);
        let src = image::open(&p).unwrap().into_rgb8();
        let strip = h as u32 - 274;
        assert_eq!(w, 274);
        assert!(strip >= 14, "caption strip {strip}px");
        assert_eq!(decoded[0].0, 200, "a single frame is the last one: held");
        let mut err = 0u64;
        for (x, y, s) in src.enumerate_pixels() {
            let p = &decoded[0].1[(((y + strip) * 274 + x) * 4) as usize..][..3];
            err += (0..3).map(|k| p[k].abs_diff(s[k]) as u64).sum::<u64>();
        }
        let mean = err as f64 / (274.0 * 274.0 * 3.0);
        assert!(mean < 6.0, "mean abs error {mean}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unreadable_png_names_the_file() {
        let dir = scratch("unreadable");
        let good = dir.join("epoch_0001.png");
        grid_png(&good, 8, solid(0));
        let missing = dir.join("epoch_0002.png");
        let garbage = dir.join("epoch_0003.png");
        std::fs::write(&garbage, b"not a png").unwrap();
        for bad in [&missing, &garbage] {
            let frames = vec![(1, good.clone()), (2, bad.clone())];
            let err = format!("{:#}", encode_gif(&frames, FONT, 100).unwrap_err());
            assert!(err.contains(&bad.display().to_string()), "{err}");
        }
        // The first file is read differently (header only): it too must be named.
        let err = format!(
            "{:#}",
            encode_gif(&[(1, missing.clone())], FONT, 100).unwrap_err()
        );
        assert!(err.contains(&missing.display().to_string()), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn mixed_sizes_name_the_odd_file() {
        let dir = scratch("sizes");
        let (a, b) = (dir.join("epoch_0001.png"), dir.join("epoch_0002.png"));
        grid_png(&a, 32, solid(0));
        grid_png(&b, 64, solid(1));
        let err = format!(
            "{:#}",
            encode_gif(&[(1, a), (2, b.clone())], FONT, 100).unwrap_err()
        );
        assert!(err.contains(&b.display().to_string()), "{err}");
        assert!(err.contains("530x530") && err.contains("274x274"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn no_frames_or_bad_font_is_an_error() {
        assert!(encode_gif(&[], FONT, 100).is_err());
        let dir = scratch("font");
        let p = dir.join("epoch_0001.png");
        grid_png(&p, 8, solid(0));
        let err = format!(
            "{:#}",
            encode_gif(&[(1, p)], b"not a font", 100).unwrap_err()
        );
        assert!(err.contains("font"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn few_colours_stay_exact_and_many_go_through_neuquant() {
        let rgba = |n: u32| -> Vec<u8> {
            (0..4096u32)
                .flat_map(|i| [(i % n) as u8, (i % n / 7) as u8, 9, 255])
                .collect()
        };
        let (indices, palette) = quantise(&rgba(256));
        assert_eq!(palette.len(), 256 * 3);
        for (px, &i) in rgba(256).chunks_exact(4).zip(&indices) {
            assert_eq!(&palette[i as usize * 3..][..3], &px[..3], "lossless");
        }
        assert!(exact_palette(&rgba(257)).is_none());
        let (indices, palette) = quantise(&rgba(300));
        assert_eq!((indices.len(), palette.len()), (4096, 256 * 3));
    }

    #[test]
    fn delays_round_to_centiseconds_and_hold_the_last() {
        assert_eq!(delays_cs(100), (10, 200));
        assert_eq!(delays_cs(0), (2, 200));
        assert_eq!(delays_cs(1500), (150, 300));
        assert_eq!(delays_cs(u16::MAX), (6554, 13108));
    }
}
