//! Check characters for numbers that people type or read out: the Luhn digit (ISO/IEC 7812)
//! for all-digit numbers, ISO/IEC 7064 MOD 37-2 for alphanumeric ones. Both catch every
//! single-character error before any database look-up.

/// The Luhn check digit for `payload` (digits only), or `None` if it holds anything else.
pub fn luhn_digit(payload: &str) -> Option<u8> {
    let mut sum = 0u32;
    for (position, character) in payload.chars().rev().enumerate() {
        let mut digit = character.to_digit(10)?;
        if position % 2 == 0 {
            digit *= 2;
            if digit > 9 {
                digit -= 9;
            }
        }
        sum += digit;
    }
    u8::try_from((10 - sum % 10) % 10).ok()
}

/// Whether `number` (digits, the last being the check digit) passes Luhn.
pub fn luhn_valid(number: &str) -> bool {
    match number.char_indices().last() {
        Some((last, check)) if last > 0 => {
            luhn_digit(&number[..last]).map(|digit| char::from(b'0' + digit)) == Some(check)
        }
        _ => false,
    }
}

const MOD37_ALPHABET: &[u8; 37] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ+";

/// ISO/IEC 7064 MOD 37-2 check character over `0-9A-Z`, with `+` for the value 36 (as NHS
/// prescription ids write it).
pub fn mod37_2_char(payload: &str) -> Option<char> {
    let mut sum: u32 = 0;
    for character in payload.chars() {
        let value = MOD37_ALPHABET
            .iter()
            .position(|&c| char::from(c) == character.to_ascii_uppercase())
            .filter(|&v| v < 36)?;
        sum = ((sum + u32::try_from(value).ok()?) * 2) % 37;
    }
    let check = (38 - sum) % 37;
    MOD37_ALPHABET
        .get(usize::try_from(check).ok()?)
        .map(|&c| char::from(c))
}

pub fn mod37_2_valid(number: &str) -> bool {
    match number.char_indices().last() {
        Some((last, check)) if last > 0 => {
            mod37_2_char(&number[..last]) == Some(check.to_ascii_uppercase())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn luhn_matches_known_card_numbers() {
        assert!(luhn_valid("79927398713"));
        assert!(!luhn_valid("79927398710"));
        assert!(luhn_valid("4111111111111111"));
        assert!(!luhn_valid("4111111111111112"));
        assert!(!luhn_valid("7"));
        assert!(!luhn_valid("12a4"));
    }

    #[test]
    fn mod37_2_rejects_characters_outside_its_alphabet() {
        let check = mod37_2_char("1A2B3C").unwrap();
        assert!(mod37_2_valid(&format!("1A2B3C{check}")));
        assert!(mod37_2_valid(&format!("1a2b3c{check}")));
        assert_eq!(mod37_2_char("1A-2B"), None);
        assert!(!mod37_2_valid("X"));
    }

    proptest! {
        #[test]
        fn luhn_catches_every_single_digit_change(
            payload in "[0-9]{11}",
            position in 0usize..12,
            replacement in 0u8..10,
        ) {
            let digit = luhn_digit(&payload).unwrap();
            let number = format!("{payload}{digit}");
            prop_assert!(luhn_valid(&number));
            let mut bytes = number.into_bytes();
            let original = bytes[position];
            let new = b'0' + replacement;
            prop_assume!(original != new);
            bytes[position] = new;
            prop_assert!(!luhn_valid(&String::from_utf8(bytes).unwrap()));
        }

        #[test]
        fn mod37_2_catches_every_single_character_change(
            payload in "[0-9A-Z]{17}",
            position in 0usize..17,
            replacement in "[0-9A-Z]",
        ) {
            let check = mod37_2_char(&payload).unwrap();
            let number = format!("{payload}{check}");
            prop_assert!(mod37_2_valid(&number));
            let mut chars: Vec<char> = number.chars().collect();
            let new = replacement.chars().next().unwrap();
            prop_assume!(chars[position] != new);
            chars[position] = new;
            prop_assert!(!mod37_2_valid(&chars.into_iter().collect::<String>()));
        }
    }
}
