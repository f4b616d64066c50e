//! User grouping (Vumi's `UserGroupingRouter`): each user is assigned to one of N apps, round
//! robin, on first contact, and stays there (the assignment is kept in `kv`). For A/B tests
//! and splitting a campaign's load between app versions.
//!
//! ```toml
//! [routers.ab.config]
//! apps = ["survey_a", "survey_b"]
//! ```

use serde::Deserialize;
use vumi_sdk::router::{Router, Target};
use vumi_sdk::{Message, Result, kv};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    apps: Vec<String>,
}

struct UserGroup;

impl Router<Settings> for UserGroup {
    fn route_inbound(msg: &Message, from: &str, s: &Settings) -> Result<Vec<Target>> {
        let key = format!("user:{from}:{}", msg.from_addr().unwrap_or_default());
        if let Some(app) =
            kv::get(&key)?.and_then(|b| String::from_utf8(b).ok()).filter(|a| s.apps.contains(a))
        {
            return Ok(vec![Target::to(app)]);
        }
        let n = kv::incr("assigned", 1)?;
        let app = pick(&s.apps, n)?;
        kv::set(&key, app.as_bytes(), None)?;
        Ok(vec![Target::to(app)])
    }
    fn route_outbound(msg: &Message, _from: &str, _s: &Settings) -> Result<Vec<Target>> {
        Ok(msg.transport_name().map(Target::to).into_iter().collect())
    }
}

/// The `n`th assignment (from 1) goes to app `(n - 1) mod N`.
fn pick(apps: &[String], n: i64) -> Result<String> {
    if apps.is_empty() {
        return Err("`apps` is empty".into());
    }
    let i = usize::try_from((n - 1).rem_euclid(apps.len() as i64)).unwrap_or(0);
    Ok(apps[i].clone())
}

vumi_sdk::export_router!(UserGroup, config = Settings);

#[cfg(test)]
mod tests {
    use super::pick;

    #[test]
    fn users_are_spread_round_robin() {
        let apps = vec!["a".to_owned(), "b".to_owned()];
        let got: Vec<String> = (1..=4).map(|n| pick(&apps, n).unwrap()).collect();
        assert_eq!(got, ["a", "b", "a", "b"]);
        assert!(pick(&[], 1).is_err());
    }
}
