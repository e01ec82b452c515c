//! Where things are: geo codes (`EU-DE`), coordinates and their unit vectors, Morton cells,
//! and the place a GeoIP database gives a network.

use std::fmt;

/// A point on the globe, in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coordinates {
    /// Latitude, -90..=90.
    pub latitude: f64,
    /// Longitude, -180..=180.
    pub longitude: f64,
}

/// Mean Earth radius used for great-circle distances, km.
const EARTH_RADIUS_KM: f64 = 6371.0;

impl Coordinates {
    /// Builds coordinates if both are in range and finite.
    pub fn new(latitude: f64, longitude: f64) -> Option<Self> {
        if latitude.is_finite()
            && longitude.is_finite()
            && (-90.0..=90.0).contains(&latitude)
            && (-180.0..=180.0).contains(&longitude)
        {
            Some(Self {
                latitude,
                longitude,
            })
        } else {
            None
        }
    }

    /// Great-circle distance in km, the basis of "nearest" (see [`UnitVector`]).
    pub fn distance_km(&self, other: &Coordinates) -> f64 {
        UnitVector::of(self).distance_km(&UnitVector::of(other))
    }
}

/// A point on the globe as a unit vector. Ranking measures every node from every place of a
/// city database; with both ends precomputed, a distance costs a square root and one `asin`
/// instead of four trigonometric calls (same great circle as haversine: its `a` is the
/// squared half chord).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnitVector([f64; 3]);

impl UnitVector {
    /// The vector of a point.
    pub fn of(point: &Coordinates) -> Self {
        let (lat, lon) = (point.latitude.to_radians(), point.longitude.to_radians());
        let (sin_lat, cos_lat) = lat.sin_cos();
        let (sin_lon, cos_lon) = lon.sin_cos();
        UnitVector([cos_lat * cos_lon, cos_lat * sin_lon, sin_lat])
    }

    /// Great-circle distance in km: twice the arc sine of the half chord.
    pub fn distance_km(&self, other: &UnitVector) -> f64 {
        arc_km(self.chord_squared(other).sqrt())
    }

    /// The squared straight-line distance (Earth radii): ordered like the great-circle one,
    /// and cheaper.
    pub fn chord_squared(&self, other: &UnitVector) -> f64 {
        let [x, y, z] = [0, 1, 2].map(|i| self.0[i] - other.0[i]);
        x * x + y * y + z * z
    }

    /// Its Morton code: the bits of its three coordinates, each quantized to
    /// [`MORTON_BITS`] bits over -1..=1, interleaved, so that sorting by code puts points of
    /// one cell of every size together.
    pub fn morton(&self) -> u64 {
        let [x, y, z] = self.0.map(|v| spread_bits(quantized(v)));
        (x << 2) | (y << 1) | z
    }

    /// One of its three coordinates (0, 1, 2), for splitting sets of points.
    pub fn coordinate(&self, axis: usize) -> f64 {
        self.0[axis % 3]
    }

    /// A centre for the points inside a box (per coordinate, lowest and highest) and a
    /// radius, km, that none of them is farther from, with a margin for rounding.
    pub fn enclosing_box(within: &[(f64, f64); 3]) -> (UnitVector, f64) {
        let middle = within.map(|(lo, hi)| (lo + hi) / 2.0);
        let half_diagonal = within
            .iter()
            .map(|(lo, hi)| (hi - lo) / 2.0)
            .map(|h| h * h)
            .sum::<f64>()
            .sqrt();
        let norm = middle.iter().map(|v| v * v).sum::<f64>().sqrt();
        let centre = if norm > 1e-9 {
            UnitVector(middle.map(|v| v / norm))
        } else {
            UnitVector([0.0, 0.0, 1.0])
        };
        // A point of the box is within a chord of the box's middle plus the half diagonal.
        let chord = centre.chord_squared(&UnitVector(middle)).sqrt() + half_diagonal;
        // Near the antipode a chord's rounding moves the arc by centimetres: 10 m covers it.
        (centre, arc_km(chord * (1.0 + 1e-9)) + 0.01)
    }
}

/// Bits per coordinate in a Morton code.
pub const MORTON_BITS: u32 = 21;

/// A coordinate in -1..=1 as a [`MORTON_BITS`]-bit cell number.
fn quantized(v: f64) -> u64 {
    let cells = f64::from(1u32 << MORTON_BITS);
    (((v + 1.0) * 0.5 * cells).floor()).clamp(0.0, cells - 1.0) as u64
}

/// Spreads 21 bits to every third bit.
fn spread_bits(v: u64) -> u64 {
    let mut x = v & 0x1f_ffff;
    x = (x | x << 32) & 0x1f_0000_0000_ffff;
    x = (x | x << 16) & 0x1f_0000_ff00_00ff;
    x = (x | x << 8) & 0x100f_00f0_0f00_f00f;
    x = (x | x << 4) & 0x10c3_0c30_c30c_30c3;
    (x | x << 2) & 0x1249_2492_4924_9249
}

/// The inverse of [`spread_bits`].
fn compact_bits(v: u64) -> u64 {
    let mut x = v & 0x1249_2492_4924_9249;
    x = (x ^ (x >> 2)) & 0x10c3_0c30_c30c_30c3;
    x = (x ^ (x >> 4)) & 0x100f_00f0_0f00_f00f;
    x = (x ^ (x >> 8)) & 0x1f_0000_ff00_00ff;
    x = (x ^ (x >> 16)) & 0x1f_0000_0000_ffff;
    (x ^ (x >> 32)) & 0x1f_ffff
}

/// The box (per coordinate, lowest and highest) of the Morton cell of `level` (0: the whole
/// cube, [`MORTON_BITS`]: the finest) that holds the point with `code`.
pub fn morton_cell(code: u64, level: u32) -> [(f64, f64); 3] {
    let level = level.min(MORTON_BITS);
    let side = 2.0 / f64::from(1u32 << level);
    [2, 1, 0].map(|shift| {
        let cell = compact_bits(code >> shift) >> (MORTON_BITS - level);
        let lo = -1.0 + cell as f64 * side;
        (lo, lo + side)
    })
}

/// Great-circle distance in km of a chord (Earth radii).
fn arc_km(chord: f64) -> f64 {
    2.0 * EARTH_RADIUS_KM * (chord / 2.0).min(1.0).asin()
}

/// Two ASCII letters as bytes, uppercase.
pub(crate) fn two_letters(text: &str) -> Option<[u8; 2]> {
    let bytes = text.as_bytes();
    if bytes.len() == 2 && bytes.iter().all(u8::is_ascii_alphabetic) {
        Some([bytes[0].to_ascii_uppercase(), bytes[1].to_ascii_uppercase()])
    } else {
        None
    }
}

/// Where a client is, as far as the database knows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Place {
    /// Continent code.
    pub continent: Option<[u8; 2]>,
    /// Country code.
    pub country: Option<[u8; 2]>,
    /// First-level subdivision code (without the country), from city databases that have it.
    pub subdivision: Option<String>,
    /// Coordinates from the record, or the country's reference point.
    pub coordinates: Option<Coordinates>,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = |c: &Option<[u8; 2]>| c.map(|c| String::from_utf8_lossy(&c).into_owned());
        write!(
            f,
            "{}",
            code(&self.continent).unwrap_or_else(|| "??".to_string())
        )?;
        if let Some(country) = code(&self.country) {
            write!(f, "-{country}")?;
        }
        if let Some(sub) = &self.subdivision {
            write!(f, "-{sub}")?;
        }
        if let Some(c) = &self.coordinates {
            write!(f, " ({:.2}, {:.2})", c.latitude, c.longitude)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_is_great_circle() {
        let tokyo = Coordinates::new(35.68, 139.69).unwrap();
        let singapore = Coordinates::new(1.35, 103.82).unwrap();
        let d = tokyo.distance_km(&singapore);
        assert!((5200.0..5400.0).contains(&d), "{d}");
        assert_eq!(tokyo.distance_km(&tokyo), 0.0);
        assert!(Coordinates::new(91.0, 0.0).is_none());
        assert!(Coordinates::new(0.0, f64::NAN).is_none());
    }
}
