//! Cases from a seed. Case `i` of seed `s` depends on nothing but `(s, i)` — each case
//! has its own random generator — so any finding replays alone with `--seed s --case i`.
//!
//! Seven cases in ten go to the HTTP API ([`http`]), a quarter to the gRPC API
//! ([`grpc`]), the rest to the internal port; each aims at one endpoint with a mix of
//! valid and malformed input.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::case::Case;
use crate::world::World;

mod grpc;
mod http;

/// Case `index` of the run with `seed`.
pub fn case(seed: u64, index: u64, world: &World) -> Case {
    let mut rng = case_rng(seed, index);
    let roll = rng.random_range(0..100);
    let mut case = if roll < 70 {
        http::case(&mut rng, world)
    } else if roll < 95 {
        grpc::case(&mut rng, world)
    } else {
        http::internal_case(&mut rng)
    };
    case.index = index;
    case
}

fn case_rng(seed: u64, index: u64) -> StdRng {
    // Spread the index over all bits so neighbouring seeds do not share cases.
    StdRng::seed_from_u64(seed ^ index.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// A weighted choice among `(weight, value)`.
fn pick<T: Copy>(rng: &mut StdRng, table: &[(u32, T)]) -> T {
    let total: u32 = table.iter().map(|(weight, _)| weight).sum();
    let mut roll = rng.random_range(0..total);
    for (weight, value) in table {
        if roll < *weight {
            return *value;
        }
        roll -= weight;
    }
    table[table.len() - 1].1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::{Door, Request};

    const WORLD: World = World {
        echo_port: 40001,
        closed_port: 40002,
    };

    fn fingerprint(case: &Case) -> String {
        format!("{} {} {}", case.endpoint, case.mutation, case.reproducer())
    }

    #[test]
    fn a_case_depends_only_on_seed_and_index() {
        for index in [0, 1, 17, 999] {
            assert_eq!(
                fingerprint(&case(42, index, &WORLD)),
                fingerprint(&case(42, index, &WORLD))
            );
        }
        let differ = (0..20)
            .filter(|&index| {
                fingerprint(&case(1, index, &WORLD)) != fingerprint(&case(2, index, &WORLD))
            })
            .count();
        assert!(
            differ > 15,
            "seeds 1 and 2 share {} of 20 cases",
            20 - differ
        );
    }

    #[test]
    fn every_door_and_many_endpoints_are_reached() {
        let cases: Vec<Case> = (0..2000).map(|index| case(7, index, &WORLD)).collect();
        for door in [Door::Http, Door::Grpc, Door::Internal] {
            assert!(cases.iter().any(|case| case.door() == door), "{door:?}");
        }
        let endpoints: std::collections::BTreeSet<&str> =
            cases.iter().map(|case| case.endpoint.as_str()).collect();
        for expected in [
            "POST /v1.0/publish/{pubsub}/{topic}",
            "POST /v1.0/state/{store}",
            "GET /v1.0/state/{store}/{key}",
            "DELETE /v1.0/state/{store}/{key}",
            "POST /v1.0/state/{store}/bulk",
            "POST /v1.0/state/{store}/transaction",
            "GET /v1.0/secrets/{store}/{key}",
            "GET /v1.0/secrets/{store}/bulk",
            "GET /v1.0/metadata",
            "PUT /v1.0/metadata/{key}",
            "* /v1.0/invoke/{id}/method/{method}",
            "* /{method} with dapr-app-id",
            "GET /v1.0/healthz",
            "gRPC InvokeService",
            "gRPC GetState",
            "gRPC GetBulkState",
            "gRPC SaveState",
            "gRPC DeleteState",
            "gRPC DeleteBulkState",
            "gRPC ExecuteStateTransaction",
            "gRPC PublishEvent",
            "gRPC GetSecret",
            "gRPC GetBulkSecret",
            "gRPC GetMetadata",
            "gRPC InvokeBinding",
            "POST /v1.0/bindings/{name}",
            "POST /v1.0-alpha1/lock/{store}",
            "POST /v1.0-alpha1/unlock/{store}",
            "gRPC TryLockAlpha1",
            "gRPC UnlockAlpha1",
            "POST /v1.0-alpha1/conversation/{name}/converse",
            "POST /v1.0-alpha2/conversation/{name}/converse",
            "gRPC ConverseAlpha1",
            "gRPC ConverseAlpha2",
            "PUT /v1.0-alpha1/crypto/{component}/encrypt",
            "PUT /v1.0-alpha1/crypto/{component}/decrypt",
            "gRPC SubtleGetKeyAlpha1",
            "gRPC SubtleEncryptAlpha1",
            "gRPC SubtleSignAlpha1",
            "gRPC SetMetadata",
            "internal * /{method}",
        ] {
            assert!(
                endpoints.contains(expected),
                "{expected} not in {endpoints:?}"
            );
        }
    }

    #[test]
    fn nothing_asks_the_sidecar_to_shut_down_or_leave_the_machine() {
        for index in 0..3000 {
            let case = case(11, index, &WORLD);
            let text = case.reproducer().to_ascii_lowercase();
            assert!(!text.contains("shutdown"), "{text}");
            for (at, _) in text.match_indices("://") {
                let host = &text[at + 3..];
                assert!(host.starts_with("127.0.0.1:"), "{text}");
            }
            if let Request::Grpc(request) = &case.request {
                assert!(!request.path.ends_with("/Shutdown"));
            }
        }
    }

    #[test]
    fn bodies_near_and_over_the_limit_are_made() {
        let sizes: Vec<usize> = (0..3000)
            .map(|index| match case(5, index, &WORLD).request {
                Request::Http(request) => request.body.len(),
                Request::Grpc(request) => request.body.len(),
                Request::Internal(request) => request.body.len(),
            })
            .collect();
        assert!(sizes.iter().any(|&size| size >= crate::values::OVER_LIMIT));
        assert!(sizes.iter().any(|&size| {
            (crate::values::UNDER_LIMIT - 4096..crate::values::BODY_LIMIT).contains(&size)
        }));
    }
}
