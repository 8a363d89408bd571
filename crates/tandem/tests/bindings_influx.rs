//! `bindings.influx` end to end: the JS SDK's `actor-parking-sensor` example's component
//! file, unchanged but for its `url`, loaded by the real `tandem` binary, and the
//! example's `binding.send("binding-influxdb", "create", {...})` request posted through
//! the sidecar's HTTP API to a stand-in InfluxDB 2 server (no InfluxDB 2 is installable
//! here; the stub is `tandem-components`' test one, which understands one Flux query).

mod common;
#[path = "../../tandem-components/tests/support/influx_stub.rs"]
mod influx_stub;

use common::Sidecar;
use influx_stub::{FieldValue, InfluxStub};

/// dapr/js-sdk `examples/http/actor-parking-sensor/components/binding-influxdb.yaml`,
/// with `__URL__` in place of `http://127.0.0.1:8086`.
const COMPONENT: &str = r#"#
# Copyright 2022 The Dapr Authors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
#

# https://docs.dapr.io/reference/components-reference/supported-bindings/influxdb/
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: binding-influxdb
  namespace: default
spec:
  type: bindings.influx
  version: v1
  metadata:
  - name: url # Required
    value: "__URL__"
  - name: token # Required
    value: my-token
  - name: org # Required
    value: my-parking-garage
  - name: bucket # Required
    value: my-sensors
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_parking_sensor_example_writes_through_the_sidecar() {
    let stub = InfluxStub::start("my-token", "my-parking-garage", "my-sensors").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("binding-influxdb.yaml"),
        COMPONENT.replace("__URL__", &stub.url),
    )
    .unwrap();
    let sidecar = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || Sidecar::start(&dir, None, None)
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();

    // What the SDK's `binding.send(name, "create", data)` posts (carParked).
    let answer = http
        .post(sidecar.url("/v1.0/bindings/binding-influxdb"))
        .json(&serde_json::json!({
            "operation": "create",
            "data": {
                "measurement": "sensor-states",
                "tags": "sensor=parking-sensor-1",
                "values": "lat=47.6396,lng=-122.1283,isParked=1",
            },
            "metadata": {},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204, "{}", answer.text().await.unwrap());
    let writes = stub.writes();
    assert_eq!(writes.len(), 1);
    assert_eq!(
        writes[0].body,
        "sensor-states,sensor=parking-sensor-1 lat=47.6396,lng=-122.1283,isParked=1"
    );
    assert_eq!(
        writes[0].query,
        "bucket=my-sensors&org=my-parking-garage&precision=ns"
    );
    let points = stub.points("my-sensors");
    assert_eq!(
        points[0].fields[2],
        ("isParked".into(), FieldValue::Float(1.0))
    );

    // A query through the sidecar answers the CSV with Dapr's `metadata.*` headers.
    let raw = r#"from(bucket:"my-sensors") |> range(start: 0)"#;
    let answer = http
        .post(sidecar.url("/v1.0/bindings/binding-influxdb"))
        .json(&serde_json::json!({"operation": "query", "metadata": {"raw": raw}}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["metadata.operation"], "query");
    assert_eq!(answer.headers()["metadata.raw"], raw);
    let csv = answer.text().await.unwrap();
    assert!(
        csv.contains(",isParked,sensor-states,parking-sensor-1\r\n"),
        "{csv}"
    );

    // An operation the binding lacks is refused by the runtime before any call.
    let answer = http
        .post(sidecar.url("/v1.0/bindings/binding-influxdb"))
        .json(&serde_json::json!({"operation": "delete"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 500);
    let text = answer.text().await.unwrap();
    assert!(text.contains("does not support operation delete"), "{text}");
    assert!(!text.contains("my-token"), "{text}");
    assert_eq!(stub.writes().len(), 1);
}
