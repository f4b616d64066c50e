//! Delivery receipts: what an SMSC says happened to a message, and the id it names it by.
//!
//! A receipt is a `deliver_sm` with `esm_class` bit 2 set. The TLVs `receipted_message_id` and
//! `message_state` are read first when present; otherwise (and for what they lack) the text
//! that SMPP 3.4 Appendix B suggests, which SMSCs write loosely:
//! `id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD
//! err:E text:...`. Fields may be missing, in another case, or in another order; the text may
//! arrive in UCS-2 (decoded with `text::decode` before it gets here).
//!
//! SMSCs also disagree on how an id is written between `submit_sm_resp` and the receipt (hex in
//! one, decimal in the other; leading zeros; case): [`IdForm`] says, per bind, how both are
//! normalised before they are compared.

/// What a receipt says of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered to the handset (`DELIVRD`).
    Delivered,
    /// Not yet (`ACCEPTD`, `ENROUTE`).
    Pending,
    /// Never will be: `EXPIRED`, `DELETED`, `UNDELIV`, `REJECTD`, `UNKNOWN`, or anything else.
    Failed,
}

/// The outcome a receipt's `stat` names.
pub fn outcome(stat: &str) -> Outcome {
    match stat.trim().to_ascii_uppercase().as_str() {
        "DELIVRD" | "DELIVERED" => Outcome::Delivered,
        "ACCEPTD" | "ACCEPTED" | "ENROUTE" => Outcome::Pending,
        _ => Outcome::Failed,
    }
}

/// The `stat` word of a `message_state` TLV value (SMPP 3.4 §5.2.28).
pub fn state_name(message_state: u8) -> &'static str {
    match message_state {
        1 => "ENROUTE",
        2 => "DELIVRD",
        3 => "EXPIRED",
        4 => "DELETED",
        5 => "UNDELIV",
        6 => "ACCEPTD",
        8 => "REJECTD",
        _ => "UNKNOWN",
    }
}

/// A receipt's fields, as far as the SMSC wrote them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Receipt {
    /// The SMSC's id of the message (as written; see [`normalise`]).
    pub id: Option<String>,
    /// `stat`: `DELIVRD`, `UNDELIV`, …
    pub stat: Option<String>,
    /// `err`: the network's error code, kept for the event.
    pub err: Option<String>,
    /// `sub` and `dlvrd`: parts submitted and delivered.
    pub sub: Option<String>,
    /// See `sub`.
    pub dlvrd: Option<String>,
    /// `submit date` and `done date`, as written (`YYMMDDhhmm[ss]`).
    pub submit_date: Option<String>,
    /// See `submit_date`.
    pub done_date: Option<String>,
}

impl Receipt {
    /// What it says happened: `None` if it names no state.
    pub fn outcome(&self) -> Option<Outcome> {
        self.stat.as_deref().map(outcome)
    }
}

const KEYS: [&str; 8] = ["id", "sub", "dlvrd", "submit date", "done date", "stat", "err", "text"];

/// The fields of a receipt's text. `None` if it has neither an `id` nor a `stat`: then it is
/// not a receipt this parser can read.
pub fn parse_text(text: &str) -> Option<Receipt> {
    let lower = text.to_ascii_lowercase();
    // Where each key's value starts: the key at the start or after whitespace, then `:`.
    let mut found: Vec<(usize, usize, &str)> = Vec::new(); // (key start, value start, key)
    for key in KEYS {
        let pattern = format!("{key}:");
        let mut from = 0;
        while let Some(at) = lower[from..].find(&pattern).map(|i| i + from) {
            let boundary = at == 0 || lower[..at].ends_with(|c: char| c.is_whitespace());
            if boundary && !found.iter().any(|(s, v, _)| at >= *s && at < *v) {
                found.push((at, at + pattern.len(), key));
                break;
            }
            from = at + pattern.len();
        }
    }
    found.sort_unstable();
    let mut r = Receipt::default();
    for (i, (_, start, key)) in found.iter().enumerate() {
        let end = found.get(i + 1).map_or(text.len(), |n| n.0);
        let raw = text[*start..end].trim();
        // Everything to the next key is the value, except that a value is one word (the text
        // is the rest of the line).
        let value = if *key == "text" { raw } else { raw.split_whitespace().next().unwrap_or("") };
        let value = (!value.is_empty()).then(|| value.to_owned());
        match *key {
            "id" => r.id = value,
            "sub" => r.sub = value,
            "dlvrd" => r.dlvrd = value,
            "submit date" => r.submit_date = value,
            "done date" => r.done_date = value,
            "stat" => r.stat = value,
            "err" => r.err = value,
            _ => {}
        }
    }
    (r.id.is_some() || r.stat.is_some()).then_some(r)
}

/// How a bind's SMSC writes its message ids, so that the id in a `submit_sm_resp` and the one
/// in its receipt compare equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdForm {
    /// Compared as written.
    #[default]
    AsIs,
    /// Case ignored.
    Lowercase,
    /// Leading zeros ignored (`000123` is `123`).
    StripZeros,
    /// The response has hex, the receipt decimal (or the other way): both are read as numbers
    /// and compared in decimal. An id that is not a number in either base stays as written.
    HexDecimal,
}

/// `id` in the form both sides are compared in. For [`IdForm::HexDecimal`], `hex` says
/// whether this id is the hex side (the `submit_sm_resp`'s, for most SMSCs that mix them).
pub fn normalise(id: &str, form: IdForm, hex: bool) -> String {
    let id = id.trim();
    match form {
        IdForm::AsIs => id.to_owned(),
        IdForm::Lowercase => id.to_ascii_lowercase(),
        IdForm::StripZeros => {
            let s = id.trim_start_matches('0');
            if s.is_empty() && !id.is_empty() { "0".into() } else { s.to_owned() }
        }
        IdForm::HexDecimal => {
            let parsed = if hex { u128::from_str_radix(id, 16) } else { id.parse::<u128>() };
            parsed.map_or_else(|_| id.to_ascii_lowercase(), |n| n.to_string())
        }
    }
}

/// The form's name in config: `as_is`, `lowercase`, `strip_zeros`, `hex_decimal`.
impl std::str::FromStr for IdForm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "as_is" => Ok(IdForm::AsIs),
            "lowercase" => Ok(IdForm::Lowercase),
            "strip_zeros" => Ok(IdForm::StripZeros),
            "hex_decimal" => Ok(IdForm::HexDecimal),
            other => Err(format!("`{other}` is not an id form (as_is, lowercase, strip_zeros, hex_decimal)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_appendix_b_text_is_read_field_by_field() {
        let r = parse_text("id:0123456789 sub:001 dlvrd:001 submit date:2612011200 done date:2612011201 stat:DELIVRD err:000 text:Hello world").unwrap();
        assert_eq!(r.id.as_deref(), Some("0123456789"));
        assert_eq!((r.sub.as_deref(), r.dlvrd.as_deref()), (Some("001"), Some("001")));
        assert_eq!(
            (r.submit_date.as_deref(), r.done_date.as_deref()),
            (Some("2612011200"), Some("2612011201"))
        );
        assert_eq!((r.stat.as_deref(), r.err.as_deref()), (Some("DELIVRD"), Some("000")));
        assert_eq!(r.outcome(), Some(Outcome::Delivered));
    }

    #[test]
    fn loose_receipts_are_tolerated() {
        // Other case, other order, fields missing, no text.
        let r = parse_text("STAT:UNDELIV ID:abc123 Err:34").unwrap();
        assert_eq!(
            (r.id.as_deref(), r.stat.as_deref(), r.err.as_deref()),
            (Some("abc123"), Some("UNDELIV"), Some("34"))
        );
        assert_eq!(r.outcome(), Some(Outcome::Failed));
        assert_eq!(r.submit_date, None);
        // A text that itself contains `id:` does not confuse the id.
        let r = parse_text("id:77 stat:ACCEPTD text:your id:99 is ready").unwrap();
        assert_eq!(r.id.as_deref(), Some("77"));
        assert_eq!(r.outcome(), Some(Outcome::Pending));
        // `did:` is not `id:`.
        assert_eq!(parse_text("did:5 hello"), None, "not a receipt");
        assert_eq!(parse_text("an ordinary message"), None);
    }

    #[test]
    fn states_map_to_outcomes() {
        for (stat, o) in [
            ("DELIVRD", Outcome::Delivered),
            ("ENROUTE", Outcome::Pending),
            ("ACCEPTD", Outcome::Pending),
            ("EXPIRED", Outcome::Failed),
            ("REJECTD", Outcome::Failed),
            ("whatever", Outcome::Failed),
        ] {
            assert_eq!(outcome(stat), o, "{stat}");
        }
        assert_eq!(state_name(2), "DELIVRD");
        assert_eq!(outcome(state_name(5)), Outcome::Failed);
        assert_eq!(outcome(state_name(6)), Outcome::Pending);
    }

    #[test]
    fn ids_are_normalised_per_bind() {
        assert_eq!(normalise("ABC", IdForm::AsIs, false), "ABC");
        assert_eq!(normalise("ABC", IdForm::Lowercase, false), "abc");
        assert_eq!(normalise("000123", IdForm::StripZeros, false), "123");
        assert_eq!(normalise("000", IdForm::StripZeros, false), "0");
        // The response says hex 1E240, the receipt decimal 123456: the same message.
        assert_eq!(
            normalise("1E240", IdForm::HexDecimal, true),
            normalise("123456", IdForm::HexDecimal, false)
        );
        assert_eq!(normalise("0001e240", IdForm::HexDecimal, true), "123456");
        assert_eq!(normalise("not-a-number", IdForm::HexDecimal, true), "not-a-number");
        assert_eq!("hex_decimal".parse::<IdForm>(), Ok(IdForm::HexDecimal));
        assert!("hexy".parse::<IdForm>().unwrap_err().contains("as_is, lowercase"));
    }
}
