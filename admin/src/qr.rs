//! QR codes of short URLs: SVG through `qrcode`'s renderer, PNG rasterised from the module
//! matrix (1-bit grayscale, a 4-module quiet zone) and encoded by `png`.

use qrcode::render::svg;
use qrcode::{Color, EcLevel, QrCode};

use crate::problem::ApiError;

pub const MIN_SIZE: u32 = 64;
pub const MAX_SIZE: u32 = 2048;
pub const DEFAULT_SIZE: u32 = 256;
/// Modules of white border on each side, as the QR standard asks.
const QUIET_ZONE: usize = 4;

/// Medium error correction: survives 15% damage and keeps codes small.
fn encode(data: &str) -> Result<QrCode, ApiError> {
    QrCode::with_error_correction_level(data, EcLevel::M)
        .map_err(|e| ApiError::Internal(format!("qr encoding: {e}")))
}

/// An SVG at least `size` pixels wide.
pub fn svg(data: &str, size: u32) -> Result<String, ApiError> {
    Ok(encode(data)?
        .render::<svg::Color<'_>>()
        .min_dimensions(size, size)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build())
}

/// A PNG of whole modules, as close to `size` pixels as whole modules allow (never below
/// one pixel per module).
pub fn png(data: &str, size: u32) -> Result<Vec<u8>, ApiError> {
    let code = encode(data)?;
    let modules = code.width();
    let colors = code.to_colors();
    let total = modules + 2 * QUIET_ZONE;
    let scale = (size as usize / total).max(1);
    let edge = total * scale;
    let mut pixels = vec![255u8; edge * edge];
    for (i, color) in colors.iter().enumerate() {
        if *color == Color::Dark {
            let (mx, my) = (i % modules + QUIET_ZONE, i / modules + QUIET_ZONE);
            for y in my * scale..(my + 1) * scale {
                pixels[y * edge + mx * scale..y * edge + (mx + 1) * scale].fill(0);
            }
        }
    }
    let side_u32 = u32::try_from(edge).map_err(|_| ApiError::Internal("qr too large".into()))?;
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, side_u32, side_u32);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .map_err(|e| ApiError::Internal(format!("png: {e}")))?;
        writer
            .write_image_data(&pixels)
            .map_err(|e| ApiError::Internal(format!("png: {e}")))?;
        writer
            .finish()
            .map_err(|e| ApiError::Internal(format!("png: {e}")))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_and_png_are_well_formed() {
        let svg = svg("https://sho.rt/abc1234", 200).unwrap();
        assert!(svg.contains("<svg") && svg.contains("</svg>"));
        let png = png("https://sho.rt/abc1234", 200).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let reader = decoder.read_info().unwrap();
        let info = reader.info();
        assert_eq!(info.width, info.height);
        assert!(info.width <= 200 && info.width >= 100, "{}", info.width);
    }
}
