//! A QR code as a PNG an admin can scan from Chatwoot.
//!
//! The `qrcode` crate computes the module matrix and scales it with its own renderer (quiet zone
//! included) onto a grayscale canvas defined here; the `png` crate (image-rs) encodes it. Before, the PNG
//! was written by hand with stored deflate blocks and our own CRC-32 and Adler-32: the library compresses
//! (651 bytes instead of 49.5 kB for the QR in `tests/status_conversation.rs`, and a pairing QR is sent to
//! Chatwoot every 20 s or so while nobody scans it), and its checksums and chunk layout are tested by a
//! project whose only job is PNG.

use qrcode::render::{Canvas, Pixel};

/// Pixels per QR module; the renderer adds the standard quiet zone (4 modules) around the code.
const SCALE: u32 = 6;

/// Encodes `text` as a QR code PNG.
pub fn qr_png(text: &str) -> Result<Vec<u8>, String> {
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(|e| format!("cannot encode the QR code: {e}"))?;
    let image = code.render::<Gray>().module_dimensions(SCALE, SCALE).build();
    let mut png = Vec::new();
    let mut encoder = png::Encoder::new(&mut png, image.side, image.side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| format!("cannot write the QR PNG: {e}"))?;
    writer.write_image_data(&image.pixels).map_err(|e| format!("cannot write the QR PNG: {e}"))?;
    writer.finish().map_err(|e| format!("cannot write the QR PNG: {e}"))?;
    Ok(png)
}

/// An 8-bit gray level, the pixel type the QR renderer draws with.
#[derive(Clone, Copy)]
struct Gray(u8);

/// A square grayscale image, row by row.
struct GrayImage {
    side: u32,
    pixels: Vec<u8>,
}

/// The renderer's canvas: starts light, dark modules drawn as rectangles.
struct GrayCanvas {
    image: GrayImage,
    dark: u8,
}

impl Pixel for Gray {
    type Image = GrayImage;
    type Canvas = GrayCanvas;

    fn default_color(color: qrcode::Color) -> Self {
        Gray(color.select(0, 255))
    }
}

impl Canvas for GrayCanvas {
    type Pixel = Gray;
    type Image = GrayImage;

    fn new(width: u32, height: u32, dark: Gray, light: Gray) -> Self {
        // A QR code is square; the side is its width (height is the same).
        let side = width.max(height);
        let pixels = vec![light.0; side as usize * side as usize];
        GrayCanvas { image: GrayImage { side, pixels }, dark: dark.0 }
    }

    fn draw_dark_pixel(&mut self, x: u32, y: u32) {
        let index = y as usize * self.image.side as usize + x as usize;
        if let Some(pixel) = self.image.pixels.get_mut(index) {
            *pixel = self.dark;
        }
    }

    fn into_image(self) -> GrayImage {
        self.image
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png_that_decodes_to_the_code() {
        let text = "2@abc,def,ghi==";
        let png = qr_png(text).unwrap();
        let modules = qrcode::QrCode::new(text.as_bytes()).unwrap();
        let mut reader = png::Decoder::new(std::io::Cursor::new(png)).read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let frame = reader.next_frame(&mut pixels).unwrap();
        let side = (modules.width() as u32 + 2 * 4) * SCALE;
        assert_eq!((frame.width, frame.height), (side, side));
        assert_eq!(frame.color_type, png::ColorType::Grayscale);
        // Every module's centre pixel has the module's colour, and the quiet zone is light.
        let colors = modules.to_colors();
        let width = modules.width();
        for (i, color) in colors.iter().enumerate() {
            let (mx, my) = ((i % width) as u32, (i / width) as u32);
            let (px, py) = ((mx + 4) * SCALE + SCALE / 2, (my + 4) * SCALE + SCALE / 2);
            let expected = if *color == qrcode::Color::Dark { 0 } else { 255 };
            assert_eq!(pixels[(py * side + px) as usize], expected, "module ({mx}, {my})");
        }
        assert!(pixels[..(4 * SCALE * side) as usize].iter().all(|p| *p == 255), "quiet zone");
    }
}
