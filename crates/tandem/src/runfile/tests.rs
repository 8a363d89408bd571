use std::fs;

use super::*;

/// A folder with `a/` and `b/` (each an app's folder) and `components/`.
fn place() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for folder in ["a", "b", "components", "b/own"] {
        fs::create_dir_all(dir.path().join(folder)).unwrap();
    }
    dir
}

fn read(dir: &Path, text: &str) -> Result<RunFile, RunFileError> {
    parse("dapr.yaml", text, dir)
}

fn flag<'a>(app: &'a AppSpec, name: &str) -> Vec<Option<&'a str>> {
    app.flags
        .iter()
        .filter(|(flag, _)| flag == name)
        .map(|(_, value)| value.as_deref())
        .collect()
}

#[test]
fn common_and_apps_merge_as_dapr_merges_them() {
    let dir = place();
    let root = dir.path();
    fs::create_dir_all(root.join("a/.dapr/resources")).unwrap();
    fs::write(root.join("a/.dapr/config.yaml"), "").unwrap();
    let file = read(
        root,
        r#"
version: 1
common:
  resourcesPath: ./components
  appProtocol: grpc
  logLevel: DEBUG
  env:
    SHARED: common
    KEPT: yes
apps:
  - appDirPath: a
    command: ["python3", "app.py"]
    appPort: 8000
    appSSL: true
    env:
      SHARED: app
      NUMBER: 7
  - appID: orders
    appDirPath: ./b/
    resourcesPaths: [own]
    appLogDestination: console
    daprdLogDestination: fileAndConsole
    appHealthThreshold: 0
    daprHTTPPort: -1
"#,
    )
    .unwrap();
    let [a, b] = &file.apps[..] else {
        panic!("two apps")
    };
    assert_eq!(a.app_id, "a", "the folder's name");
    assert_eq!(a.dir, root.join("a"));
    assert_eq!(a.command, ["python3", "app.py"]);
    assert_eq!(a.subcommand(), "run");
    // The app's `.dapr` folder wins over `common`.
    let local = root.join("a/.dapr/resources").display().to_string();
    assert_eq!(flag(a, "resources-path"), [Some(local.as_str())]);
    let config = root.join("a/.dapr/config.yaml").display().to_string();
    assert_eq!(flag(a, "config"), [Some(config.as_str())]);
    assert_eq!(flag(a, "app-protocol"), [Some("grpcs")], "appSSL");
    assert_eq!(flag(a, "app-port"), [Some("8000")]);
    assert_eq!(flag(a, "log-level"), [Some("debug")]);
    assert_eq!(a.env["SHARED"], "app");
    assert_eq!(a.env["KEPT"], "yes");
    assert_eq!(a.env["NUMBER"], "7");
    assert_eq!(a.app_log, LogDestination::FileAndConsole);
    assert_eq!(a.daprd_log, LogDestination::File);

    assert_eq!(b.app_id, "orders");
    // An app's paths are relative to its folder.
    let own = root.join("b/own").display().to_string();
    assert_eq!(flag(b, "resources-path"), [Some(own.as_str())]);
    assert!(flag(b, "config").is_empty());
    assert_eq!(flag(b, "app-protocol"), [Some("grpc")]);
    assert!(flag(b, "app-health-threshold").is_empty(), "0 is unset");
    assert!(flag(b, "dapr-http-port").is_empty(), "-1 is unset");
    assert_eq!(b.app_log, LogDestination::Console);
    assert_eq!(b.daprd_log, LogDestination::FileAndConsole);
    assert!(b.command.is_empty());
    assert_eq!(b.subcommand(), "sidecar");
    assert_eq!(b.args()[..2], ["--app-id", "orders"]);
    assert!(file.warnings.is_empty(), "{:?}", file.warnings);
}

#[test]
fn common_resources_apply_when_the_app_has_none() {
    let dir = place();
    let file = read(
        dir.path(),
        "version: 1\ncommon:\n  resourcesPaths: [components]\napps:\n- appDirPath: b\n",
    )
    .unwrap();
    let components = dir.path().join("components").display().to_string();
    assert_eq!(
        flag(&file.apps[0], "resources-path"),
        [Some(components.as_str())]
    );
}

#[test]
fn bad_files_are_refused_naming_the_file_the_app_and_the_field() {
    let dir = place();
    let cases = [
        ("apps: [{appDirPath: a}]", "dapr.yaml: version: required"),
        ("version: 1", "dapr.yaml: apps: no apps to run"),
        (
            "version: 1\napps: [{appID: x}]",
            "dapr.yaml: apps[0] (appID \"x\"): appDirPath: required",
        ),
        (
            "version: 1\napps:\n- appDirPath: a\n- appID: orders\n  appDirPath: b\n  appPort: abc\n",
            "dapr.yaml: apps[1] (appID \"orders\"): appPort: expected a port number, found \"abc\"",
        ),
        (
            "version: 1\napps: [{appDirPath: a, daprGRPCPort: 70000}]",
            "dapr.yaml: apps[0]: daprGRPCPort: expected a port number (1 to 65535), found 70000",
        ),
        (
            "version: 1\napps: [{appDirPath: nowhere}]",
            "dapr.yaml: apps[0]: appDirPath: ",
        ),
        (
            "version: 1\napps: [{appDirPath: a, command: python3 app.py}]",
            "dapr.yaml: apps[0]: command: expected a list such as",
        ),
        (
            "version: 1\napps: [{appDirPath: a, appLogDestination: files}]",
            "dapr.yaml: apps[0]: appLogDestination: \"files\" is not one of console, file, fileAndConsole",
        ),
        (
            "version: 1\ncommon: {resourcesPath: missing}\napps: [{appDirPath: a}]",
            "dapr.yaml: common: resourcesPath: ",
        ),
        (
            "version: 1\ncommon: {enableApiLogging: maybe}\napps: [{appDirPath: a}]",
            "dapr.yaml: common: enableApiLogging: expected true or false, found \"maybe\"",
        ),
        (
            "version: 1\napps:\n- {appDirPath: a, daprHTTPPort: 3500}\n- {appDirPath: b, daprHTTPPort: 3500}\n",
            "dapr.yaml: apps[1] (appID \"b\"): daprHTTPPort: port 3500 is also apps[0]'s daprHTTPPort",
        ),
        ("version: 1\napps: [a: [", "dapr.yaml: YAML syntax error"),
        (
            "version: 1\napps: [{appDirPath: a, maxBodySize: lots}]",
            "dapr.yaml: apps[0]: maxBodySize: expected a size such as 4Mi, found \"lots\"",
        ),
    ];
    for (text, expected) in cases {
        let error = read(dir.path(), text).unwrap_err().to_string();
        assert!(error.starts_with(expected), "{text}\n→ {error}");
    }
}

#[test]
fn unknown_and_misplaced_fields_are_warned_about() {
    let dir = place();
    let file = read(
        dir.path(),
        "version: 1\nverison: 2\ncommon:\n  appPort: 3000\n  logLevl: debug\napps:\n- appDirPath: a\n  comand: [x]\n  containerImage: x:1\n  daprHTTPMaxRequestSize: 16\n",
    )
    .unwrap();
    let warnings = file.warnings.join("\n");
    for expected in [
        "dapr.yaml: verison: unknown field (did you mean `version`?); ignored",
        "dapr.yaml: common: appPort: set per app, not in `common`",
        "dapr.yaml: common: logLevl: unknown field (did you mean `logLevel`?)",
        "dapr.yaml: apps[0]: comand: unknown field (did you mean `command`?)",
        "dapr.yaml: apps[0]: containerImage: used only when the run file deploys to Kubernetes",
        "dapr.yaml: apps[0]: daprHTTPMaxRequestSize: the Dapr CLI's older name of `maxBodySize`",
    ] {
        assert!(warnings.contains(expected), "{expected}\nin:\n{warnings}");
    }
    assert_eq!(flag(&file.apps[0], "max-body-size"), [Some("16Mi")]);
}

#[test]
fn a_folder_means_its_dapr_yaml() {
    let dir = place();
    assert!(
        locate(dir.path())
            .unwrap_err()
            .contains("holds no dapr.yaml")
    );
    fs::write(dir.path().join("dapr.yaml"), "").unwrap();
    assert_eq!(locate(dir.path()).unwrap(), dir.path().join("dapr.yaml"));
    fs::write(dir.path().join("run.txt"), "").unwrap();
    assert!(
        locate(&dir.path().join("run.txt"))
            .unwrap_err()
            .contains("not a YAML file")
    );
}
