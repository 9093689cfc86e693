//! Offline-first resolution against a local Hub, a closed port and a silent server.

use std::{collections::BTreeMap, fs, path::Path, time::Duration};

use saeidx_hub::{
    HubError, HubSettings, NotCachedBecause, Origin, RepoKind, RepoRef, RequestFailure, cache,
    resolve,
};
use saeidx_testkit::hub::{self as local, LocalHub, ServedRepo, closed_endpoint};

fn settings(cache_dir: &Path, endpoint: &str) -> HubSettings {
    HubSettings {
        cache_dir: cache_dir.to_path_buf(),
        offline: false,
        token: None,
        endpoint: endpoint.to_string(),
        timeout: Duration::from_secs(5),
    }
}

fn served() -> ServedRepo {
    let files = BTreeMap::from([
        ("config.json".to_string(), b"{\"a\": 1}".to_vec()),
        ("weights.bin".to_string(), vec![1, 2, 3]),
    ]);
    let mut repo = ServedRepo::new(local::RepoKind::Model, "org/tiny", files);
    repo.revisions.push("v1".into());
    repo
}

/// Downloads every listed file.
fn everything(listing: &saeidx_hub::Listing) -> Result<(), HubError> {
    for file in &listing.files {
        listing.get(file)?;
    }
    Ok(())
}

/// Fills the cache from a served repo at `revision`, then returns the cache.
fn filled_cache(revision: &str) -> (tempfile::TempDir, String) {
    let cache = tempfile::tempdir().unwrap();
    let hub = LocalHub::start(vec![served()]);
    let repo = RepoRef::new(RepoKind::Model, "org/tiny", Some(revision));
    let snapshot = resolve(&settings(cache.path(), hub.endpoint()), &repo, everything).unwrap();
    assert_eq!(snapshot.origin, Origin::Hub);
    assert_eq!(
        fs::read(snapshot.dir.join("weights.bin")).unwrap(),
        [1, 2, 3]
    );
    (cache, snapshot.commit)
}

#[test]
fn a_closed_port_falls_back_to_the_cached_revision() {
    let (cache, commit) = filled_cache("v1");
    let closed = settings(cache.path(), &closed_endpoint());
    let repo = RepoRef::new(RepoKind::Model, "org/tiny", Some("v1"));
    let snapshot = resolve(&closed, &repo, everything).unwrap();
    assert_eq!(snapshot.commit, commit);
    assert!(matches!(
        snapshot.origin,
        Origin::Fallback(RequestFailure::Unreachable(_))
    ));
    // A revision never fetched is not cached: the error says what to run.
    let other = RepoRef::new(RepoKind::Model, "org/tiny", Some("v2"));
    let error = resolve(&closed, &other, everything).unwrap_err();
    assert!(
        matches!(
            &error,
            HubError::NotCached(missing)
                if matches!(missing.because, NotCachedBecause::Hub(RequestFailure::Unreachable(_)))
        ),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains("huggingface-cli download --repo-type model org/tiny --revision v2"),
        "{message}"
    );
}

#[test]
fn server_errors_and_refusals_fall_back_to_the_cache() {
    let (cache, commit) = filled_cache("main");
    let hub = LocalHub::start(vec![served()]);
    let online = settings(cache.path(), hub.endpoint());
    let repo = RepoRef::new(RepoKind::Model, "org/tiny", None);
    for (status, is_server) in [(500, true), (503, true), (404, false), (401, false)] {
        hub.fail_with(Some(status));
        let snapshot = resolve(&online, &repo, everything).unwrap();
        assert_eq!(snapshot.commit, commit, "HTTP {status}");
        match snapshot.origin {
            Origin::Fallback(RequestFailure::Server { status: s, .. }) if is_server => {
                assert_eq!(s, status)
            }
            Origin::Fallback(RequestFailure::Refused { status: s, .. }) if !is_server => {
                assert_eq!(s, status)
            }
            other => panic!("HTTP {status}: {other:?}"),
        }
    }
    // Uncached repos get the refusal with advice.
    hub.fail_with(Some(404));
    let missing = RepoRef::new(RepoKind::Model, "org/absent", None);
    let error = resolve(&online, &missing, everything).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("HTTP 404"), "{message}");
    assert!(message.contains("huggingface-cli download"), "{message}");
}

#[test]
fn a_failed_download_inside_the_listing_falls_back_too() {
    let (cache, commit) = filled_cache("main");
    let hub = LocalHub::start(vec![served()]);
    let repo = RepoRef::new(RepoKind::Model, "org/tiny", None);
    let snapshot = resolve(&settings(cache.path(), hub.endpoint()), &repo, |listing| {
        listing.get("not-in-the-repo.json").map(drop)
    })
    .unwrap();
    assert_eq!(snapshot.commit, commit);
    assert!(matches!(
        snapshot.origin,
        Origin::Fallback(RequestFailure::Refused { status: 404, .. })
    ));
}

#[test]
fn a_silent_server_times_out_and_falls_back() {
    let (cache, commit) = filled_cache("main");
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let mut slow = settings(cache.path(), &endpoint);
    slow.timeout = Duration::from_millis(300);
    let repo = RepoRef::new(RepoKind::Model, "org/tiny", None);
    let snapshot = resolve(&slow, &repo, everything).unwrap();
    assert_eq!(snapshot.commit, commit);
    assert!(matches!(
        snapshot.origin,
        Origin::Fallback(RequestFailure::Unreachable(_))
    ));
    drop(silent);
}

#[test]
fn offline_means_the_cache_only() {
    let (cache, commit) = filled_cache("main");
    let hub = LocalHub::start(vec![served()]);
    let mut offline = settings(cache.path(), hub.endpoint());
    offline.offline = true;
    let repo = RepoRef::new(RepoKind::Model, "org/tiny", None);
    let snapshot = resolve(&offline, &repo, everything).unwrap();
    assert_eq!(
        (snapshot.commit, snapshot.origin),
        (commit, Origin::Offline)
    );
    let missing = RepoRef::new(RepoKind::Model, "org/tiny", Some("v7"));
    let error = resolve(&offline, &missing, everything).unwrap_err();
    assert!(
        error.to_string().contains("Unset HF_HUB_OFFLINE"),
        "{error}"
    );
    assert!(hub.requests().is_empty(), "{:?}", hub.requests());
}

#[test]
fn placed_repos_never_touch_the_network() {
    let cache = tempfile::tempdir().unwrap();
    let folder = tempfile::tempdir().unwrap();
    fs::write(folder.path().join("config.json"), "{}").unwrap();
    let placed = cache::place_snapshot(cache.path(), "org/tiny", folder.path()).unwrap();
    // The Hub serves a different repo of the same name: it must not be asked.
    let hub = LocalHub::start(vec![served()]);
    let repo = RepoRef::new(RepoKind::Model, "org/tiny", None);
    let snapshot = resolve(&settings(cache.path(), hub.endpoint()), &repo, everything).unwrap();
    assert_eq!(
        (snapshot.commit, snapshot.origin),
        (placed.commit, Origin::Placed)
    );
    assert!(hub.requests().is_empty(), "{:?}", hub.requests());
    // saeidx's own namespace is never asked either, placed or not.
    let default = RepoRef::new(RepoKind::Model, "saeidx-default/absent", None);
    let error = resolve(
        &settings(cache.path(), hub.endpoint()),
        &default,
        everything,
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("saeidx assets prepare"),
        "{error}"
    );
    assert!(hub.requests().is_empty(), "{:?}", hub.requests());
}
