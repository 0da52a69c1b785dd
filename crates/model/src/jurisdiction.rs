//! Country codes (ISO 3166-1 alpha-2) and the jurisdictions derived from them (EU, EEA).

/// EU member states (27).
pub const EU: &[&str] = &[
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV",
    "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
];

/// EEA members outside the EU.
pub const EEA_ONLY: &[&str] = &["IS", "LI", "NO"];

/// Every officially assigned ISO 3166-1 alpha-2 code.
const ISO_ALPHA2: &str =
    "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ \
BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ \
DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT \
GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY \
KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX \
MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS \
RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN \
TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

/// True for an assigned ISO 3166-1 alpha-2 code in upper case.
pub fn is_country(code: &str) -> bool {
    code.len() == 2 && ISO_ALPHA2.split_whitespace().any(|c| c == code)
}

pub fn is_eu(country: &str) -> bool {
    EU.contains(&country)
}

pub fn is_eea(country: &str) -> bool {
    is_eu(country) || EEA_ONLY.contains(&country)
}

/// The jurisdictions a country belongs to: itself, then `EU` and/or `EEA`.
pub fn jurisdictions_of(country: &str) -> Vec<String> {
    let mut out = vec![country.to_string()];
    if is_eu(country) {
        out.push("EU".into());
    }
    if is_eea(country) {
        out.push("EEA".into());
    }
    out
}

/// A jurisdiction name accepted in policies: `EU`, `EEA` or a country code.
pub fn is_jurisdiction(name: &str) -> bool {
    name == "EU" || name == "EEA" || is_country(name)
}

/// Whether `country` lies inside the named jurisdiction.
pub fn country_in(country: &str, jurisdiction: &str) -> bool {
    match jurisdiction {
        "EU" => is_eu(country),
        "EEA" => is_eea(country),
        other => other == country,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_jurisdictions() {
        assert_eq!(jurisdictions_of("FR"), vec!["FR", "EU", "EEA"]);
        assert_eq!(jurisdictions_of("NO"), vec!["NO", "EEA"]);
        assert_eq!(jurisdictions_of("US"), vec!["US"]);
        assert_eq!(EU.len(), 27);
    }

    #[test]
    fn country_codes() {
        assert!(is_country("FR"));
        assert!(!is_country("fr"));
        assert!(!is_country("XX"));
        assert!(!is_country("FRA"));
        assert!(is_jurisdiction("EEA"));
        assert!(!is_jurisdiction("EUR"));
    }
}
