//! Enums stored in PostgreSQL as text. [`stored_enum!`] declares the enum and its one
//! mapping to the stored names, written once beside each variant: `as_str` (the name
//! stored and sent), `parse` (a stored name back; `None` for any other text) and `ALL`
//! (every variant, in the order declared, for filters and checks). Serde uses the same
//! names, so what the database holds, what a server function sends and what a filter
//! offers cannot drift apart.

/// Declares an enum whose variants are stored as text: each variant names its stored
/// form (`Variant = "stored_name"`). Derives `Clone, Copy, Debug, PartialEq, Eq, Hash`
/// and serde with those names, and adds `ALL`, `as_str` and `parse`.
macro_rules! stored_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident = $stored:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        $vis enum $name {
            $( $(#[$variant_meta])* #[serde(rename = $stored)] $variant, )+
        }

        impl $name {
            /// Every variant, in the order declared.
            pub const ALL: [$name; [$($stored),+].len()] = [$($name::$variant),+];

            /// The stored name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $stored,)+
                }
            }

            /// The variant stored as `value`.
            pub fn parse(value: &str) -> Option<$name> {
                match value {
                    $($stored => Some($name::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

pub(crate) use stored_enum;

#[cfg(test)]
mod tests {
    stored_enum! {
        /// A test enum.
        enum Colour {
            Red = "red",
            /// With a doc comment.
            DarkBlue = "dark_blue",
        }
    }

    #[test]
    fn each_variant_round_trips_through_its_one_stored_name() {
        assert_eq!(Colour::ALL, [Colour::Red, Colour::DarkBlue]);
        for colour in Colour::ALL {
            assert_eq!(Colour::parse(colour.as_str()), Some(colour));
            assert_eq!(
                serde_json::to_value(colour).unwrap(),
                serde_json::json!(colour.as_str())
            );
        }
        assert_eq!(Colour::DarkBlue.as_str(), "dark_blue");
        assert_eq!(Colour::parse("DarkBlue"), None);
        assert_eq!(Colour::parse(""), None);
    }
}
