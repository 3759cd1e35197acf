//! The CLI end to end against moto's Secrets Manager (run through infra/test.sh).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

fn cli(args: &[&str]) -> (bool, String) {
    assert!(
        std::env::var("AWS_ENDPOINT_URL_SECRETS_MANAGER").is_ok(),
        "run through infra/test.sh: AWS_ENDPOINT_URL_SECRETS_MANAGER must point at moto"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_secure-auth")).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn kid_of(show: &str, stage: &str) -> Option<String> {
    show.lines()
        .find(|l| l.starts_with(stage))
        .and_then(|l| l.split_whitespace().nth(1))
        .filter(|k| *k != "-")
        .map(str::to_owned)
}

#[test]
fn given_keys_init_rotate_and_show_then_stages_move_and_no_key_material_is_printed() {
    let secret = format!("cli-{}", std::process::id());
    let (ok, init) = cli(&["keys", "init", "--secret-id", &secret, "--alg", "rs256"]);
    assert!(ok, "{init}");
    let (ok, again) = cli(&["keys", "init", "--secret-id", &secret]);
    assert!(ok && again == init, "init is idempotent: {again}");
    let (_, show1) = cli(&["keys", "show", "--secret-id", &secret]);
    let first = kid_of(&show1, "AWSCURRENT").expect(&show1);
    assert!(show1.contains("RS256"), "{show1}");
    assert_eq!(kid_of(&show1, "AWSPREVIOUS"), None);

    let (ok, rotated) = cli(&["keys", "rotate", "--secret-id", &secret]);
    assert!(ok, "{rotated}");
    let (_, show2) = cli(&["keys", "show", "--secret-id", &secret]);
    let second = kid_of(&show2, "AWSCURRENT").unwrap();
    assert_ne!(first, second);
    assert_eq!(kid_of(&show2, "AWSPREVIOUS").as_deref(), Some(first.as_str()));
    assert!(show2.contains("RS256"), "rotation keeps the algorithm: {show2}");
    for text in [&init, &show1, &rotated, &show2] {
        assert!(!text.contains("PRIVATE KEY") && !text.contains("secret\""), "{text}");
    }
    let (ok, err) = cli(&["keys", "show", "--secret-id", "does-not-exist"]);
    assert!(!ok && err.contains("signing keys"), "{err}");
}
