//! 64-bit kernel values in JSON: written as hex strings (`"0xc000000028c26d00"`,
//! exact in every JSON reader, unlike numbers above 2^53), read from a hex
//! string or an integer.  Use as `#[serde(with = "crate::hexint")]`, or
//! `crate::hexint::opt` for an `Option<u64>`.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{v:#x}"))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(HexOrInt)
}

/// Parse `"0x..."` (or a decimal string) into a u64.
pub fn parse(text: &str) -> Option<u64> {
    let t = text.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() && hex.len() <= 16 => u64::from_str_radix(hex, 16).ok(),
        Some(_) => None,
        None => t.parse().ok(),
    }
}

struct HexOrInt;

impl Visitor<'_> for HexOrInt {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a 64-bit value: a hex string \"0x...\" or an integer 0..2^64-1")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        parse(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}

pub mod opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::serialize(v, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super")] u64);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_hex_and_decimal_and_refuses_the_rest() {
        assert_eq!(parse("0xc000000028c26d00"), Some(0xc000_0000_28c2_6d00));
        assert_eq!(parse("0XFF"), Some(255));
        assert_eq!(parse("42"), Some(42));
        assert_eq!(parse("0x"), None);
        assert_eq!(parse("0x1ffffffffffffffff"), None);
        assert_eq!(parse("-1"), None);
        assert_eq!(parse("zz"), None);
    }
}
