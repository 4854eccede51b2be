//! Typed command headers, converted to and from `extFields`.
//!
//! Each struct mirrors a Java `CommandCustomHeader`: field names are the Java names as
//! they appear on the wire, `@CFNotNull` fields are plain types (missing → error), the
//! others are `Option`s (missing → `None`, and `None` is left out when writing, as fastjson
//! omits nulls). Values are read leniently (see [`crate::ext::HeaderValue`]).

use crate::ext::{ExtFields, HeaderError};

mod broker;
mod client;
mod namesrv;
mod send;

pub use broker::*;
pub use client::*;
pub use namesrv::*;
pub use send::*;

/// A typed view of `extFields`.
pub trait CommandHeader: Sized {
    fn to_ext_fields(&self) -> ExtFields;
    fn from_ext_fields(ext: &ExtFields) -> Result<Self, HeaderError>;
}

/// Commands without a custom header.
impl CommandHeader for () {
    fn to_ext_fields(&self) -> ExtFields {
        ExtFields::new()
    }
    fn from_ext_fields(_: &ExtFields) -> Result<Self, HeaderError> {
        Ok(())
    }
}

/// Declares a header struct. Each field is one of
/// - `name: req Type = "wireName"`: required (`@CFNotNull`), missing is an error;
/// - `name: opt Type = "wireName"`: optional, an `Option<Type>`, `None` not written;
/// - `name: def Type = "wireName" | default`: a Java primitive or initialised field, always
///   written, read as `default` (or `Default::default()`) when missing.
macro_rules! command_header {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* $field:ident : $kind:ident $ty:ty = $key:literal $(| $default:expr)? ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $crate::header::field_type!($kind $ty), )*
        }

        impl $crate::header::CommandHeader for $name {
            fn to_ext_fields(&self) -> $crate::ext::ExtFields {
                #[allow(unused_mut)]
                let mut ext = $crate::ext::ExtFields::with_capacity(16);
                $( $crate::header::field_write!($kind ext, $key, &self.$field); )*
                ext
            }

            #[allow(unused_variables)]
            fn from_ext_fields(ext: &$crate::ext::ExtFields) -> Result<Self, $crate::ext::HeaderError> {
                Ok(Self { $( $field: $crate::header::field_read!($kind ext, $key $(, $default)?), )* })
            }
        }

        #[cfg(test)]
        impl $crate::header::tests::Sample for $name {
            #[allow(unused_variables)]
            fn sample(rng: &mut $crate::header::tests::Rng) -> Self {
                Self { $( $field: $crate::header::tests::Sample::sample(rng), )* }
            }
        }
    };
}

macro_rules! field_type {
    (req $ty:ty) => { $ty };
    (def $ty:ty) => { $ty };
    (opt $ty:ty) => { Option<$ty> };
}

macro_rules! field_write {
    (req $ext:ident, $key:literal, $value:expr) => {
        $ext.put($key, $value)
    };
    (def $ext:ident, $key:literal, $value:expr) => {
        $ext.put($key, $value)
    };
    (opt $ext:ident, $key:literal, $value:expr) => {
        $ext.put_opt($key, $value)
    };
}

macro_rules! field_read {
    (req $ext:ident, $key:literal) => {
        $ext.required($key)?
    };
    (def $ext:ident, $key:literal) => {
        $ext.optional($key)?.unwrap_or_default()
    };
    (def $ext:ident, $key:literal, $default:expr) => {
        $ext.optional($key)?.unwrap_or($default)
    };
    (opt $ext:ident, $key:literal) => {
        $ext.optional($key)?
    };
}

pub(crate) use {command_header, field_read, field_type, field_write};

#[cfg(test)]
pub(crate) mod tests {
    //! Samples for round-trip property tests: proptest drives the seed, `Sample` builds a
    //! value of any header from it, so every header type is covered by one macro.

    pub struct Rng(pub u64);

    impl Rng {
        pub fn next(&mut self) -> u64 {
            // splitmix64
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
    }

    pub trait Sample {
        fn sample(rng: &mut Rng) -> Self;
    }

    impl Sample for i32 {
        fn sample(rng: &mut Rng) -> Self {
            rng.next() as i32
        }
    }
    impl Sample for i64 {
        fn sample(rng: &mut Rng) -> Self {
            rng.next() as i64
        }
    }
    impl Sample for bool {
        fn sample(rng: &mut Rng) -> Self {
            rng.next() & 1 == 1
        }
    }
    impl Sample for String {
        fn sample(rng: &mut Rng) -> Self {
            const ALPHABET: &[char] = &[
                'a', 'Z', '%', '#', ' ', '"', '\\', '\u{1}', '\u{2}', 'é', '中', '0',
            ];
            let len = (rng.next() % 12) as usize;
            (0..len)
                .map(|_| ALPHABET[(rng.next() % ALPHABET.len() as u64) as usize])
                .collect()
        }
    }
    impl<T: Sample> Sample for Option<T> {
        fn sample(rng: &mut Rng) -> Self {
            (!rng.next().is_multiple_of(3)).then(|| T::sample(rng))
        }
    }

    /// Encodes `value` into a command with each header encoding, through a whole frame,
    /// and decodes it back.
    pub fn round_trip<H: super::CommandHeader + Sample + PartialEq + std::fmt::Debug>(seed: u64) {
        use crate::frame::FrameDecoder;
        use crate::{RemotingCommand, SerializeType};
        let value = H::sample(&mut Rng(seed));
        for ty in [SerializeType::Json, SerializeType::RocketMq] {
            let cmd = RemotingCommand::request(10)
                .with_header(&value)
                .with_serialize_type(ty);
            let mut wire = cmd.encode().expect("encode");
            let back = FrameDecoder::default()
                .decode(&mut wire)
                .expect("decode")
                .expect("whole frame");
            assert_eq!(back.header::<H>().expect("typed header"), value, "{ty:?}");
        }
    }

    #[test]
    fn missing_required_field_is_named() {
        use crate::ext::{ExtFields, HeaderError};
        let err = super::GetRouteInfoRequestHeader::from_ext_fields_for_test(&ExtFields::new());
        assert_eq!(err, Err(HeaderError::MissingField { field: "topic" }));
    }

    impl super::GetRouteInfoRequestHeader {
        fn from_ext_fields_for_test(
            ext: &crate::ext::ExtFields,
        ) -> Result<Self, crate::ext::HeaderError> {
            <Self as super::CommandHeader>::from_ext_fields(ext)
        }
    }
}
