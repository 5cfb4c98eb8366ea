//! Dota 2 reference data: heroes, items, game modes, lobby types, regions and patches.
//!
//! The data is dotaconstants 10.8.0, vendored under `schemas/reference/dotaconstants/`
//! and embedded with `include_str!`, so lookups never touch the file system. It is
//! parsed once, on the first call to [`Reference::get`].

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use thiserror::Error;

const HEROES_JSON: &str = include_str!("../reference/dotaconstants/heroes.json");
const ITEM_IDS_JSON: &str = include_str!("../reference/dotaconstants/item_ids.json");
const GAME_MODE_JSON: &str = include_str!("../reference/dotaconstants/game_mode.json");
const LOBBY_TYPE_JSON: &str = include_str!("../reference/dotaconstants/lobby_type.json");
const REGION_JSON: &str = include_str!("../reference/dotaconstants/region.json");
const CLUSTER_JSON: &str = include_str!("../reference/dotaconstants/cluster.json");
const PATCH_JSON: &str = include_str!("../reference/dotaconstants/patch.json");

/// How the game coordinator prefixes game modes (`DOTA_GAMEMODE_ALL_DRAFT`).
const GC_GAME_MODE_PREFIX: &str = "DOTA_GAMEMODE_";

/// Game coordinator abbreviations (enum `DOTA_GameMode` of `dota_shared_enums.proto`)
/// that dotaconstants spells out. Other GC names match once lowercased.
const GC_GAME_MODE_ALIASES: &[(&str, &str)] = &[
    ("none", "unknown"),
    ("ap", "all_pick"),
    ("cm", "captains_mode"),
    ("rd", "random_draft"),
    ("sd", "single_draft"),
    ("ar", "all_random"),
    ("hw", "diretide"),
    ("reverse_cm", "reverse_captains_mode"),
    ("xmas", "greeviling"),
    ("mo", "mid_only"),
    ("lp", "least_played"),
    ("pool1", "limited_heroes"),
    ("fh", "compendium_matchmaking"),
    ("cd", "captains_draft"),
    ("bd", "balanced_draft"),
    ("ardm", "all_random_death_match"),
    ("1v1mid", "1v1_mid"),
];

/// A hero as dotaconstants describes it (only the fields scouting uses).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Hero {
    pub id: i32,
    /// Internal name, e.g. `npc_dota_hero_antimage`.
    pub name: String,
    /// Display name, e.g. `Anti-Mage`.
    pub localized_name: String,
    /// `str`, `agi`, `int` or `all`.
    pub primary_attr: String,
    /// E.g. `Carry`, `Support`, `Disabler`.
    pub roles: Vec<String>,
}

/// A game patch and when it went live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    /// E.g. `7.36`.
    pub name: String,
    /// Unix seconds (UTC), rounded up to the whole second.
    pub starts_at: i64,
}

/// The vendored data does not parse: a bug in the vendored files, never an input error.
#[derive(Debug, Error)]
pub enum ReferenceError {
    #[error("{file}: invalid JSON: {source}")]
    Json {
        file: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{file}: key `{key}` is not an integer id")]
    BadKey { file: &'static str, key: String },
    #[error("{file}: entry `{key}` carries id {id}")]
    IdMismatch {
        file: &'static str,
        key: i32,
        id: i32,
    },
    #[error("{file}: `{value}` is not a UTC time like 2024-05-23T05:26:05.242Z")]
    BadTime { file: &'static str, value: String },
}

/// All reference tables, indexed for lookup by id.
#[derive(Debug)]
pub struct Reference {
    // BTreeMaps so iteration (e.g. by the load generator) is in id order, hence deterministic.
    heroes: BTreeMap<i32, Hero>,
    items: BTreeMap<i32, String>,
    game_modes: BTreeMap<i32, String>,
    game_mode_ids: HashMap<String, i32>,
    lobby_types: BTreeMap<i32, String>,
    regions: BTreeMap<i32, String>,
    cluster_regions: BTreeMap<i32, i32>,
    /// Sorted by start time.
    patches: Vec<Patch>,
}

static REFERENCE: LazyLock<Reference> = LazyLock::new(|| match Reference::load() {
    Ok(reference) => reference,
    // The data is compiled in and fully parsed by this module's tests, so this cannot
    // depend on input: failing here means the vendored files were broken at build time.
    Err(err) => panic!("vendored dotaconstants data is invalid: {err}"),
});

impl Reference {
    /// The reference data, parsed on first use.
    pub fn get() -> &'static Reference {
        &REFERENCE
    }

    fn load() -> Result<Self, ReferenceError> {
        let heroes = keyed_by_id::<Hero>("heroes.json", HEROES_JSON, |h| h.id)?;
        let game_modes = named_entries("game_mode.json", GAME_MODE_JSON)?;
        let game_mode_ids = game_modes
            .iter()
            .map(|(id, name)| (name.clone(), *id))
            .collect();
        Ok(Self {
            heroes,
            items: keyed::<String>("item_ids.json", ITEM_IDS_JSON)?,
            game_modes,
            game_mode_ids,
            lobby_types: named_entries("lobby_type.json", LOBBY_TYPE_JSON)?,
            regions: keyed::<String>("region.json", REGION_JSON)?,
            cluster_regions: keyed::<i32>("cluster.json", CLUSTER_JSON)?,
            patches: patches("patch.json", PATCH_JSON)?,
        })
    }

    pub fn hero(&self, id: i32) -> Option<&Hero> {
        self.heroes.get(&id)
    }

    /// All heroes, in ascending id order.
    pub fn heroes(&self) -> impl Iterator<Item = &Hero> {
        self.heroes.values()
    }

    /// Item name without prefix, e.g. `blink` for 1.
    pub fn item_name(&self, id: i32) -> Option<&str> {
        self.items.get(&id).map(String::as_str)
    }

    /// All `(id, name)` items, in ascending id order; includes recipes.
    pub fn items(&self) -> impl Iterator<Item = (i32, &str)> {
        self.items.iter().map(|(id, name)| (*id, name.as_str()))
    }

    /// E.g. `game_mode_all_draft` for 22.
    pub fn game_mode(&self, id: i32) -> Option<&str> {
        self.game_modes.get(&id).map(String::as_str)
    }

    /// Accepts dotaconstants names (`game_mode_all_draft`) and game coordinator
    /// names (`DOTA_GAMEMODE_ALL_DRAFT`, including its abbreviations such as `DOTA_GAMEMODE_AP`).
    pub fn game_mode_id_by_name(&self, name: &str) -> Option<i32> {
        match name.strip_prefix(GC_GAME_MODE_PREFIX) {
            Some(gc) => {
                let key = format!(
                    "game_mode_{}",
                    gc_game_mode_suffix(&gc.to_ascii_lowercase())
                );
                self.game_mode_ids.get(&key).copied()
            }
            None => self.game_mode_ids.get(name).copied(),
        }
    }

    /// E.g. `lobby_type_ranked` for 7.
    pub fn lobby_type(&self, id: i32) -> Option<&str> {
        self.lobby_types.get(&id).map(String::as_str)
    }

    /// Region name by region id, e.g. `EUROPE` for 3.
    pub fn region(&self, region_id: i32) -> Option<&str> {
        self.regions.get(&region_id).map(String::as_str)
    }

    /// Region name of a server cluster, e.g. `EUROPE` for 132.
    pub fn region_of_cluster(&self, cluster: i32) -> Option<&str> {
        self.cluster_regions
            .get(&cluster)
            .and_then(|region| self.region(*region))
    }

    /// All known server clusters, ascending.
    pub fn clusters(&self) -> impl Iterator<Item = i32> + '_ {
        self.cluster_regions.keys().copied()
    }

    /// The patch live at `unix_secs`; `None` before the first known patch.
    pub fn patch_at(&self, unix_secs: i64) -> Option<&str> {
        let live = self.patches.partition_point(|p| p.starts_at <= unix_secs);
        live.checked_sub(1)
            .and_then(|i| self.patches.get(i))
            .map(|p| p.name.as_str())
    }

    /// All patches, oldest first.
    pub fn patches(&self) -> &[Patch] {
        &self.patches
    }
}

fn gc_game_mode_suffix(lowercase: &str) -> &str {
    GC_GAME_MODE_ALIASES
        .iter()
        .find(|(gc, _)| *gc == lowercase)
        .map_or(lowercase, |(_, full)| full)
}

fn parse_json<T: DeserializeOwned>(file: &'static str, text: &str) -> Result<T, ReferenceError> {
    serde_json::from_str(text).map_err(|source| ReferenceError::Json { file, source })
}

/// A JSON object keyed by integer ids in strings (`{"1": ...}`), the dotaconstants layout.
fn keyed<T: DeserializeOwned>(
    file: &'static str,
    text: &str,
) -> Result<BTreeMap<i32, T>, ReferenceError> {
    let raw: HashMap<String, T> = parse_json(file, text)?;
    raw.into_iter()
        .map(|(key, value)| match key.parse::<i32>() {
            Ok(id) => Ok((id, value)),
            Err(_) => Err(ReferenceError::BadKey { file, key }),
        })
        .collect()
}

/// Like [`keyed`], and checks each key against the id the entry itself carries.
fn keyed_by_id<T: DeserializeOwned>(
    file: &'static str,
    text: &str,
    id_of: impl Fn(&T) -> i32,
) -> Result<BTreeMap<i32, T>, ReferenceError> {
    let map = keyed::<T>(file, text)?;
    match map.iter().find(|(key, value)| id_of(value) != **key) {
        Some((key, value)) => Err(ReferenceError::IdMismatch {
            file,
            key: *key,
            id: id_of(value),
        }),
        None => Ok(map),
    }
}

#[derive(Deserialize)]
struct NamedEntry {
    id: i32,
    name: String,
}

/// `game_mode.json` and `lobby_type.json`: id → `{id, name, balanced}`.
fn named_entries(file: &'static str, text: &str) -> Result<BTreeMap<i32, String>, ReferenceError> {
    let entries = keyed_by_id::<NamedEntry>(file, text, |e| e.id)?;
    Ok(entries.into_iter().map(|(id, e)| (id, e.name)).collect())
}

#[derive(Deserialize)]
struct PatchEntry {
    name: String,
    date: String,
}

fn patches(file: &'static str, text: &str) -> Result<Vec<Patch>, ReferenceError> {
    let entries: Vec<PatchEntry> = parse_json(file, text)?;
    let mut patches = entries
        .into_iter()
        .map(|e| match parse_utc_secs(&e.date) {
            Some(starts_at) => Ok(Patch {
                name: e.name,
                starts_at,
            }),
            None => Err(ReferenceError::BadTime {
                file,
                value: e.date,
            }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    patches.sort_by_key(|p| p.starts_at);
    Ok(patches)
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff]Z` into unix seconds. A fractional second
/// rounds up: a patch live from 02:16:32.682 is not live yet at 02:16:32.
fn parse_utc_secs(text: &str) -> Option<i64> {
    let (date, time) = text.strip_suffix('Z')?.split_once('T')?;
    let (hms, fraction) = match time.split_once('.') {
        Some((hms, fraction)) => (hms, fraction),
        None => (time, ""),
    };
    let [year, month, day] = split_numbers(date, '-')?;
    let [hour, minute, second] = split_numbers(hms, ':')?;
    let valid = (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && hour < 24
        && minute < 60
        && second < 61
        && fraction.bytes().all(|b| b.is_ascii_digit());
    if !valid {
        return None;
    }
    let round_up = i64::from(fraction.bytes().any(|b| b != b'0'));
    Some(
        days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second + round_up,
    )
}

fn split_numbers(text: &str, separator: char) -> Option<[i64; 3]> {
    let mut parts = text.split(separator).map(|p| p.parse::<i64>().ok());
    let numbers = [parts.next()??, parts.next()??, parts.next()??];
    parts.next().is_none().then_some(numbers)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn vendored_data_loads() {
        let reference = Reference::load().unwrap();
        // Counts read off the vendored files.
        assert_eq!(reference.heroes.len(), 127);
        assert_eq!(reference.items.len(), 596);
        assert_eq!(reference.game_modes.len(), 26);
        assert_eq!(reference.lobby_types.len(), 16);
        assert_eq!(reference.regions.len(), 22);
        assert_eq!(reference.cluster_regions.len(), 74);
        assert_eq!(reference.patches.len(), 61);
    }

    #[test]
    fn heroes() {
        let anti_mage = Reference::get().hero(1).unwrap();
        assert_eq!(anti_mage.name, "npc_dota_hero_antimage");
        assert_eq!(anti_mage.localized_name, "Anti-Mage");
        assert_eq!(anti_mage.primary_attr, "agi");
        assert_eq!(anti_mage.roles, ["Carry", "Escape", "Nuker"]);

        let bane = Reference::get().hero(3).unwrap();
        assert_eq!(bane.primary_attr, "all");
        assert!(bane.roles.iter().any(|r| r == "Support"));

        assert_eq!(Reference::get().hero(155).unwrap().id, 155);
        assert!(Reference::get().hero(0).is_none());
        assert!(Reference::get().hero(24).is_none(), "no hero has id 24");
        let ids: Vec<i32> = Reference::get().heroes().map(|h| h.id).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "heroes() runs in id order"
        );
    }

    #[test]
    fn items() {
        let reference = Reference::get();
        assert_eq!(reference.item_name(1), Some("blink"));
        assert_eq!(reference.item_name(16), Some("branches"));
        assert_eq!(reference.item_name(0), Some("ability_base"));
        assert_eq!(reference.item_name(-1), None);
    }

    #[test]
    fn game_modes_and_lobby_types() {
        let reference = Reference::get();
        assert_eq!(reference.game_mode(22), Some("game_mode_all_draft"));
        assert_eq!(reference.game_mode(23), Some("game_mode_turbo"));
        assert_eq!(reference.game_mode(26), None);
        assert_eq!(
            reference.game_mode_id_by_name("game_mode_all_draft"),
            Some(22)
        );
        assert_eq!(
            reference.game_mode_id_by_name("DOTA_GAMEMODE_ALL_DRAFT"),
            Some(22)
        );
        assert_eq!(
            reference.game_mode_id_by_name("DOTA_GAMEMODE_TURBO"),
            Some(23)
        );
        assert_eq!(reference.game_mode_id_by_name("all_draft"), None);
        assert_eq!(reference.game_mode_id_by_name("DOTA_GAMEMODE_NOPE"), None);
        assert_eq!(reference.lobby_type(7), Some("lobby_type_ranked"));
        assert_eq!(reference.lobby_type(1), Some("lobby_type_practice"));
        assert_eq!(reference.lobby_type(99), None);
    }

    #[test]
    fn every_gc_game_mode_maps_to_its_enum_number() {
        // Enum DOTA_GameMode, numbered 0.. in this order.
        let gc_names = [
            "NONE",
            "AP",
            "CM",
            "RD",
            "SD",
            "AR",
            "INTRO",
            "HW",
            "REVERSE_CM",
            "XMAS",
            "TUTORIAL",
            "MO",
            "LP",
            "POOL1",
            "FH",
            "CUSTOM",
            "CD",
            "BD",
            "ABILITY_DRAFT",
            "EVENT",
            "ARDM",
            "1V1MID",
            "ALL_DRAFT",
            "TURBO",
            "MUTATION",
            "COACHES_CHALLENGE",
        ];
        for (number, gc) in (0..).zip(gc_names) {
            let name = format!("DOTA_GAMEMODE_{gc}");
            assert_eq!(
                Reference::get().game_mode_id_by_name(&name),
                Some(number),
                "{name}"
            );
        }
    }

    #[test]
    fn regions() {
        let reference = Reference::get();
        // cluster.json: 132 → 3; region.json: 3 → EUROPE.
        assert_eq!(reference.region_of_cluster(132), Some("EUROPE"));
        // cluster.json: 225 → 17; region.json: 17 → PW TELECOM GUANGDONG.
        assert_eq!(
            reference.region_of_cluster(225),
            Some("PW TELECOM GUANGDONG")
        );
        assert_eq!(reference.region_of_cluster(111), Some("US WEST"));
        assert_eq!(reference.region_of_cluster(999), None);
        for cluster in reference.clusters() {
            assert!(
                reference.region_of_cluster(cluster).is_some(),
                "cluster {cluster}"
            );
        }
    }

    #[test]
    fn patches() {
        let reference = Reference::get();
        // 6.70 starts 2010-12-24T00:00:00Z = 1293148800.
        assert_eq!(reference.patch_at(1_293_148_799), None);
        assert_eq!(reference.patch_at(1_293_148_800), Some("6.70"));
        // The public fixture match (2015-09-09) and the pro match (2017-06-17).
        assert_eq!(reference.patch_at(1_441_835_947), Some("6.84"));
        assert_eq!(reference.patch_at(1_497_678_766), Some("7.06"));
        // 7.32 starts 2022-08-24T02:16:32.682Z: not yet at .000, live from the next second.
        assert_eq!(reference.patch_at(1_661_307_392), Some("7.31"));
        assert_eq!(reference.patch_at(1_661_307_393), Some("7.32"));
        assert_eq!(reference.patch_at(i64::MAX), Some("7.41"));
    }

    #[test]
    fn utc_parsing() {
        assert_eq!(parse_utc_secs("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_utc_secs("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(
            parse_utc_secs("2024-02-29T23:59:59.000Z"),
            Some(1_709_251_199)
        );
        assert_eq!(parse_utc_secs("2024-02-29T23:59:59"), None);
        assert_eq!(parse_utc_secs("2024-13-01T00:00:00Z"), None);
        assert_eq!(parse_utc_secs("2024-01-01T00:00:00.5xZ"), None);
        assert_eq!(parse_utc_secs("2024-01-01-01T00:00:00Z"), None);
    }
}
