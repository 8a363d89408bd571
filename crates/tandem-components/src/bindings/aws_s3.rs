//! `bindings.aws.s3`: one S3 bucket as an output binding, compatible with Dapr's —
//! `create` (PutObject), `get` (GetObject), `delete` (DeleteObject), `list`
//! (ListObjects) and `presign` (a presigned GET URL). Spoken through tandem's own small
//! AWS client (`crate::aws`: SigV4 with the signed `x-amz-content-sha256` S3 wants), so
//! `endpoint` may point at a local emulator or another S3-compatible store.
//!
//! Addressing: path-style (`{endpoint}/{bucket}/{key}`) when `forcePathStyle` is true or
//! an `endpoint` is set, virtual-hosted (`{bucket}.s3.{region}.amazonaws.com/{key}`)
//! otherwise. Objects travel in one request each (no multipart upload), so an object
//! is limited to what S3 takes in one PUT (5 GB) and to what fits in memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Value, json};
use tandem_spec::{ComponentMetadata, ResourceError};

use super::{Binding, BindingError, InvokeRequest, InvokeResponse};
use crate::aws::{self, Client, CredentialSources, Credentials};

pub const METADATA: &[&str] = &[
    "bucket",
    "region",
    "endpoint",
    "accessKey",
    "secretKey",
    "sessionToken",
    "forcePathStyle",
    "decodeBase64",
    "encodeBase64",
    "disableSSL",
    "insecureSSL",
    "storageClass",
];

/// How long one S3 call may take (objects travel whole in it).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// `list`'s page when `maxResults` is not given (or below 1), as Dapr's.
const DEFAULT_MAX_RESULTS: u64 = 1000;
/// The longest a SigV4 presigned URL may live.
const MAX_PRESIGN: Duration = Duration::from_secs(7 * 24 * 3600);

/// The S3 binding.
pub struct S3Binding {
    client: Client,
    bucket: String,
    /// `scheme://authority` of the emulator or store, when `endpoint` is set.
    endpoint: Option<http::Uri>,
    /// `endpoint` as written (with the scheme `disableSSL` implies), for `location`.
    endpoint_text: Option<String>,
    path_style: bool,
    plain_http: bool,
    decode_base64: bool,
    encode_base64: bool,
    storage_class: Option<String>,
}

impl S3Binding {
    pub async fn build(metadata: &ComponentMetadata) -> Result<Arc<dyn Binding>, ResourceError> {
        let bucket = metadata.required("bucket")?.to_owned();
        if bucket.contains('/') {
            return Err(metadata.field_error(
                "bucket",
                format!("'{bucket}' is not a bucket name: it holds a '/'"),
            ));
        }
        if metadata.bool_or("insecureSSL", false)? {
            return Err(metadata.field_error(
                "insecureSSL",
                "is not supported by tandem: certificates are always verified (use an http:// \
                 endpoint with disableSSL for a local store without TLS)",
            ));
        }
        let plain_http = metadata.bool_or("disableSSL", false)?;
        let path_style = metadata.bool_or("forcePathStyle", false)?;
        let decode_base64 = metadata.bool_or("decodeBase64", false)?;
        let encode_base64 = metadata.bool_or("encodeBase64", false)?;
        let storage_class = metadata.get("storageClass").map(str::to_owned);
        let (endpoint, endpoint_text) = endpoint(metadata, plain_http)?;
        let sources = CredentialSources::default();
        let credentials = Credentials::read(metadata, &sources)?;
        let region = aws::region(metadata, &sources)?;
        let binding = Self {
            client: Client::new(credentials, region, endpoint.clone()),
            bucket,
            path_style: path_style || endpoint.is_some(),
            endpoint,
            endpoint_text,
            plain_http,
            decode_base64,
            encode_base64,
            storage_class,
        };
        binding.check_bucket(metadata).await?;
        Ok(Arc::new(binding))
    }

    /// HeadBucket at the start: a bucket that does not exist, one in another region
    /// (`region` named), or an endpoint out of reach stops it with the field named; a
    /// refusal (403) is looked into by [`Self::check_refusal`].
    async fn check_bucket(&self, metadata: &ComponentMetadata) -> Result<(), ResourceError> {
        let (base, path) = self.address(None);
        let answer = self
            .client
            .request(
                "s3",
                "HEAD",
                &base,
                &path,
                &[],
                Vec::new(),
                Bytes::new(),
                true,
                CALL_TIMEOUT,
            )
            .await
            .map_err(|error| metadata.field_error("bucket", error.to_string()))?;
        match answer.status {
            200..=299 => Ok(()),
            404 => Err(metadata.field_error(
                "bucket",
                format!(
                    "the bucket '{}' does not exist at {}",
                    self.bucket, answer.endpoint
                ),
            )),
            301 => Err(metadata.field_error(
                "region",
                format!(
                    "the bucket '{}' is in region {}, not {}",
                    self.bucket,
                    answer
                        .header("x-amz-bucket-region")
                        .unwrap_or("another one"),
                    self.client.region()
                ),
            )),
            403 => self.check_refusal(metadata).await,
            _ => Err(metadata.field_error("bucket", answer.into_error().to_string())),
        }
    }

    /// HeadBucket was refused, and a HEAD has no body to say why: GetBucketLocation
    /// does. Keys S3 does not know, or a signature it does not take (a wrong
    /// `secretKey`), stop the start; a mere lack of rights on the bucket only warns,
    /// since the keys may still put and get objects.
    async fn check_refusal(&self, metadata: &ComponentMetadata) -> Result<(), ResourceError> {
        let (base, path) = self.address(None);
        let query = [("location".to_owned(), String::new())];
        let answer = self
            .client
            .request(
                "s3",
                "GET",
                &base,
                &path,
                &query,
                Vec::new(),
                Bytes::new(),
                true,
                CALL_TIMEOUT,
            )
            .await
            .map_err(|error| metadata.field_error("bucket", error.to_string()))?;
        if (200..300).contains(&answer.status) {
            return Ok(());
        }
        let error = answer.into_error();
        match error.code() {
            Some("InvalidAccessKeyId") => Err(metadata.field_error(
                "accessKey",
                format!("S3 does not know the access key: {error}"),
            )),
            Some("SignatureDoesNotMatch") => Err(metadata.field_error(
                "secretKey",
                format!("S3 does not take the signature: the secret key is wrong: {error}"),
            )),
            _ => {
                tracing::warn!(bucket = %self.bucket, "S3 refused to show the bucket ({error}); going on: the keys may still put and get objects");
                Ok(())
            }
        }
    }

    /// The base URL (scheme and host) and the encoded path of the bucket (`key` None) or
    /// of an object.
    fn address(&self, key: Option<&str>) -> (http::Uri, String) {
        let key = key.map(aws::encode_path);
        if self.path_style || !virtual_hostable(&self.bucket, self.plain_http) {
            let base = match &self.endpoint {
                Some(endpoint) => endpoint.clone(),
                None => self.aws_host("s3"),
            };
            let path = match key {
                Some(key) => format!("/{}/{key}", aws::encode(&self.bucket)),
                None => format!("/{}", aws::encode(&self.bucket)),
            };
            (base, path)
        } else {
            let base = self.aws_host(&format!("{}.s3", self.bucket));
            (base, format!("/{}", key.unwrap_or_default()))
        }
    }

    /// `https://{prefix}.{region}.amazonaws.com` (`http://` with `disableSSL`).
    fn aws_host(&self, prefix: &str) -> http::Uri {
        let region = self.client.region();
        let suffix = if region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        let scheme = if self.plain_http { "http" } else { "https" };
        format!("{scheme}://{prefix}.{region}.{suffix}")
            .parse()
            .expect("a region and a virtual-hostable bucket hold letters, digits and dashes")
    }

    /// Where Dapr says an uploaded object is: `{endpoint}/{bucket}/{key}` with an
    /// endpoint, else AWS's global path-style or virtual-hosted URL.
    fn location(&self, key: &str) -> String {
        if let Some(endpoint) = &self.endpoint_text {
            return format!("{}/{}/{key}", endpoint.trim_end_matches('/'), self.bucket);
        }
        if self.path_style {
            return format!("https://s3.amazonaws.com/{}/{key}", self.bucket);
        }
        format!("https://{}.s3.amazonaws.com/{key}", self.bucket)
    }

    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        action: &str,
        method: &str,
        key: Option<&str>,
        query: &[(String, String)],
        headers: Vec<(String, String)>,
        body: Bytes,
    ) -> Result<aws::Answer, BindingError> {
        let (base, path) = self.address(key);
        let answer = self
            .client
            .request(
                "s3",
                method,
                &base,
                &path,
                query,
                headers,
                body,
                true,
                CALL_TIMEOUT,
            )
            .await
            .map_err(|error| BindingError::failed(action.to_owned(), error))?;
        if (200..300).contains(&answer.status) {
            return Ok(answer);
        }
        let error = answer.into_error();
        if error.code() == Some("NoSuchBucket") {
            return Err(BindingError::failed(
                action.to_owned(),
                format!(
                    "the bucket '{}' (metadata field bucket) does not exist: {error}",
                    self.bucket
                ),
            ));
        }
        Err(BindingError::failed(action.to_owned(), error))
    }

    async fn create(&self, request: InvokeRequest) -> Result<InvokeResponse, BindingError> {
        let key = match request.metadata.get("key").filter(|key| !key.is_empty()) {
            Some(key) => key.clone(),
            None => uuid::Uuid::new_v4().to_string(),
        };
        let mut data = unquote(&request.data);
        if truthy_or(&request.metadata, "decodeBase64", self.decode_base64) {
            data = base64::engine::general_purpose::STANDARD
                .decode(&data)
                .map_err(|why| {
                    BindingError::Invalid(format!(
                        "decodeBase64 is set but the data is not base64: {why}"
                    ))
                })?
                .into();
        }
        let mut headers = Vec::new();
        let content_type = request
            .metadata
            .get("contentType")
            .or_else(|| request.metadata.get("Content-Type"))
            .map(|value| value.trim())
            .filter(|value| !value.is_empty());
        if let Some(content_type) = content_type {
            headers.push(("content-type".to_owned(), content_type.to_owned()));
        }
        let storage_class = request
            .metadata
            .get("storageClass")
            .filter(|value| !value.is_empty())
            .or(self.storage_class.as_ref());
        if let Some(storage_class) = storage_class {
            headers.push(("x-amz-storage-class".to_owned(), storage_class.clone()));
        }
        if let Some(tags) = request.metadata.get("tags")
            && let Some(tagging) = tagging(tags)?
        {
            headers.push(("x-amz-tagging".to_owned(), tagging));
        }
        // The presign TTL is checked before anything is written.
        let presign_ttl = self.presign_ttl(&request.metadata, false)?;
        let answer = self
            .call(
                &format!("uploading '{key}' to the bucket '{}'", self.bucket),
                "PUT",
                Some(&key),
                &[],
                headers,
                data,
            )
            .await?;
        let mut body = json!({
            "location": self.location(&key),
            "versionID": answer.header("x-amz-version-id"),
        });
        if let Some(ttl) = presign_ttl {
            body["presignURL"] = Value::String(self.presign_url(&key, ttl));
        }
        Ok(InvokeResponse {
            data: serde_json::to_vec(&body)
                .expect("JSON values serialize")
                .into(),
            metadata: HashMap::from([("key".to_owned(), key)]),
        })
    }

    async fn get(&self, request: InvokeRequest) -> Result<InvokeResponse, BindingError> {
        let key = required_key(&request)?;
        let (base, path) = self.address(Some(key));
        let action = format!("getting '{key}' from the bucket '{}'", self.bucket);
        let answer = self
            .client
            .request(
                "s3",
                "GET",
                &base,
                &path,
                &[],
                Vec::new(),
                Bytes::new(),
                true,
                CALL_TIMEOUT,
            )
            .await
            .map_err(|error| BindingError::failed(action.clone(), error))?;
        if !(200..300).contains(&answer.status) {
            let error = answer.into_error();
            if matches!(error.code(), Some("NoSuchKey")) {
                return Err(BindingError::failed(
                    action,
                    format!("object not found: no object '{key}'"),
                ));
            }
            if matches!(error.code(), Some("NoSuchBucket")) {
                return Err(BindingError::failed(
                    action,
                    format!(
                        "the bucket '{}' (metadata field bucket) does not exist: {error}",
                        self.bucket
                    ),
                ));
            }
            return Err(BindingError::failed(action, error));
        }
        let data = if truthy_or(&request.metadata, "encodeBase64", self.encode_base64) {
            base64::engine::general_purpose::STANDARD
                .encode(&answer.body)
                .into()
        } else {
            answer.body
        };
        Ok(InvokeResponse {
            data,
            metadata: HashMap::new(),
        })
    }

    async fn delete(&self, request: InvokeRequest) -> Result<(), BindingError> {
        let key = required_key(&request)?;
        self.call(
            &format!("deleting '{key}' from the bucket '{}'", self.bucket),
            "DELETE",
            Some(key),
            &[],
            Vec::new(),
            Bytes::new(),
        )
        .await?;
        Ok(())
    }

    async fn list(&self, request: InvokeRequest) -> Result<InvokeResponse, BindingError> {
        let options = ListOptions::parse(&request.data)?;
        let mut query = vec![("max-keys".to_owned(), options.max_results.to_string())];
        for (name, value) in [
            ("prefix", &options.prefix),
            ("marker", &options.marker),
            ("delimiter", &options.delimiter),
        ] {
            if !value.is_empty() {
                query.push((name.to_owned(), value.clone()));
            }
        }
        let answer = self
            .call(
                &format!("listing the bucket '{}'", self.bucket),
                "GET",
                None,
                &query,
                Vec::new(),
                Bytes::new(),
            )
            .await?;
        let xml = String::from_utf8_lossy(&answer.body);
        let listing = list_answer(&xml);
        Ok(InvokeResponse {
            data: serde_json::to_vec(&listing)
                .expect("JSON values serialize")
                .into(),
            metadata: HashMap::new(),
        })
    }

    fn presign(&self, request: &InvokeRequest) -> Result<InvokeResponse, BindingError> {
        let key = required_key(request)?;
        let ttl = self
            .presign_ttl(&request.metadata, true)?
            .expect("required above");
        let body = json!({"presignURL": self.presign_url(key, ttl)});
        Ok(InvokeResponse {
            data: serde_json::to_vec(&body)
                .expect("JSON values serialize")
                .into(),
            metadata: HashMap::new(),
        })
    }

    /// The request's `presignTTL` (a Go duration such as `15m`), up to SigV4's 7 days.
    fn presign_ttl(
        &self,
        metadata: &HashMap<String, String>,
        required: bool,
    ) -> Result<Option<Duration>, BindingError> {
        let Some(text) = metadata.get("presignTTL").filter(|text| !text.is_empty()) else {
            if required {
                return Err(BindingError::Invalid(
                    "required metadata 'presignTTL' missing (a duration such as 15m)".into(),
                ));
            }
            return Ok(None);
        };
        let ttl = tandem_spec::parse_duration(text).map_err(|why| {
            BindingError::Invalid(format!(
                "presignTTL '{text}' is not a duration such as 15m: {why}"
            ))
        })?;
        if ttl < Duration::from_secs(1) || ttl > MAX_PRESIGN {
            return Err(BindingError::Invalid(format!(
                "presignTTL '{text}' must be between 1s and 168h (7 days)"
            )));
        }
        Ok(Some(ttl))
    }

    fn presign_url(&self, key: &str, ttl: Duration) -> String {
        let (base, path) = self.address(Some(key));
        self.client.presign(
            "s3",
            &base,
            &path,
            &aws::amz_date(time::OffsetDateTime::now_utc()),
            ttl,
        )
    }
}

#[async_trait]
impl Binding for S3Binding {
    fn operations(&self) -> &'static [&'static str] {
        &["create", "get", "delete", "list", "presign"]
    }

    async fn invoke(&self, request: InvokeRequest) -> Result<Option<InvokeResponse>, BindingError> {
        match request.operation.as_str() {
            "create" => self.create(request).await.map(Some),
            "get" => self.get(request).await.map(Some),
            "delete" => self.delete(request).await.map(|()| None),
            "list" => self.list(request).await.map(Some),
            "presign" => self.presign(&request).map(Some),
            _ => Err(BindingError::UnsupportedOperation {
                operation: request.operation,
                supported: self.operations().to_vec(),
            }),
        }
    }
}

/// `endpoint`, with `http://` (with `disableSSL`) or `https://` put before one written
/// without a scheme, as Dapr does for `disableSSL`.
fn endpoint(
    metadata: &ComponentMetadata,
    plain_http: bool,
) -> Result<(Option<http::Uri>, Option<String>), ResourceError> {
    let Some(value) = metadata.get("endpoint") else {
        return Ok((None, None));
    };
    let text = if value.contains("://") {
        value.to_owned()
    } else if plain_http {
        format!("http://{value}")
    } else {
        format!("https://{value}")
    };
    let uri = crate::aws::endpoint_url(metadata, value, &text)?;
    if !matches!(uri.path(), "" | "/") {
        return Err(metadata.field_error(
            "endpoint",
            format!("'{value}' has a path; only a scheme and a host (and port) are used"),
        ));
    }
    Ok((Some(uri), Some(text)))
}

/// Request metadata `tags` (`key=value,key2=value2`, as Dapr takes them) as S3's
/// `x-amz-tagging` header: URL-encoded pairs joined with `&`.
fn tagging(tags: &str) -> Result<Option<String>, BindingError> {
    let mut pairs = Vec::new();
    for entry in tags.split(',') {
        let pair = entry
            .trim()
            .split_once('=')
            .map(|(name, value)| (name.trim(), value.trim()))
            .filter(|(name, value)| !name.is_empty() && !value.is_empty());
        let Some((name, value)) = pair else {
            return Err(BindingError::Invalid(format!(
                "tags: '{entry}' is not key=value (tags are written key=value,key2=value2)"
            )));
        };
        pairs.push(format!("{}={}", aws::encode(name), aws::encode(value)));
    }
    Ok((!pairs.is_empty()).then(|| pairs.join("&")))
}

/// Whether `bucket` can be a host name (`{bucket}.s3.{region}.amazonaws.com`): lowercase
/// letters, digits and dashes, and no dots over TLS (AWS's certificate covers one
/// level), as AWS's SDKs decide; other buckets are addressed path-style.
fn virtual_hostable(bucket: &str, plain_http: bool) -> bool {
    !bucket.is_empty()
        && bucket.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
        && (plain_http || !bucket.contains('.'))
}

/// The request's `key`, which must be set.
fn required_key(request: &InvokeRequest) -> Result<&str, BindingError> {
    request
        .metadata
        .get("key")
        .map(String::as_str)
        .filter(|key| !key.is_empty())
        .ok_or_else(|| BindingError::Invalid("required metadata 'key' missing".into()))
}

/// A request's yes/no metadata as Dapr reads it (`true`, `1`, `yes`, `on`, ... are yes;
/// anything else no), else the component's setting.
fn truthy_or(metadata: &HashMap<String, String>, name: &str, default: bool) -> bool {
    match metadata.get(name).filter(|value| !value.is_empty()) {
        Some(value) => matches!(
            value.trim().to_ascii_lowercase().as_str(),
            "y" | "yes" | "true" | "t" | "on" | "1"
        ),
        None => default,
    }
}

/// The data to store, as Dapr takes it: a JSON string stands for its text (the HTTP API
/// hands `"hello"` with its quotes), a JSON number or boolean for its text, `null` for
/// nothing; anything else is stored as it came.
fn unquote(data: &Bytes) -> Bytes {
    match serde_json::from_slice::<Value>(data) {
        Ok(Value::String(text)) => text.into(),
        Ok(Value::Null) => Bytes::new(),
        Ok(Value::Bool(yes)) => yes.to_string().into(),
        Ok(Value::Number(number)) => match (number.as_i64(), number.as_u64(), number.as_f64()) {
            (Some(whole), _, _) => whole.to_string().into(),
            (_, Some(whole), _) => whole.to_string().into(),
            (_, _, Some(float)) => float.to_string().into(),
            _ => data.clone(),
        },
        _ => data.clone(),
    }
}

/// `list`'s request data: `{"maxResults", "prefix", "marker", "delimiter"}`, all optional.
#[derive(Debug, PartialEq)]
struct ListOptions {
    max_results: u64,
    prefix: String,
    marker: String,
    delimiter: String,
}

impl ListOptions {
    fn parse(data: &Bytes) -> Result<Self, BindingError> {
        let invalid = |why: String| {
            BindingError::Invalid(format!(
                "list: the data must be JSON such as {{\"maxResults\": 10, \"prefix\": \"a/\", \
                 \"marker\": \"\", \"delimiter\": \"/\"}}: {why}"
            ))
        };
        let value: Value = if data.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(data).map_err(|why| invalid(why.to_string()))?
        };
        let object = match value {
            Value::Null => serde_json::Map::new(),
            Value::Object(object) => object,
            other => return Err(invalid(format!("got {other}"))),
        };
        let text = |name: &str| -> Result<String, BindingError> {
            match object.get(name) {
                None | Some(Value::Null) => Ok(String::new()),
                Some(Value::String(text)) => Ok(text.clone()),
                Some(other) => Err(invalid(format!("{name} is {other}, not a string"))),
            }
        };
        let max_results = match object.get("maxResults") {
            None | Some(Value::Null) => DEFAULT_MAX_RESULTS,
            Some(Value::Number(number)) => match number.as_i64() {
                Some(n) if n >= 1 => n as u64,
                Some(_) => DEFAULT_MAX_RESULTS,
                None => {
                    return Err(invalid(format!(
                        "maxResults is {number}, not a whole number"
                    )));
                }
            },
            Some(other) => return Err(invalid(format!("maxResults is {other}, not a number"))),
        };
        Ok(Self {
            max_results,
            prefix: text("prefix")?,
            marker: text("marker")?,
            delimiter: text("delimiter")?,
        })
    }
}

/// The raw inner texts of every `<name>...</name>` element (not unescaped), and `xml`
/// without them.
fn blocks<'a>(xml: &'a str, name: &str) -> (Vec<&'a str>, String) {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let mut found = Vec::new();
    let mut rest_out = String::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else {
            break;
        };
        rest_out.push_str(&rest[..start]);
        found.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    rest_out.push_str(rest);
    (found, rest_out)
}

/// An element's text: `Some("")` for `<name/>`, `None` when absent.
fn element(xml: &str, name: &str) -> Option<String> {
    aws::xml_value(xml, name).or_else(|| xml.contains(&format!("<{name}/>")).then(String::new))
}

/// S3's time (`2026-12-04T07:15:25.000Z`) as Go writes a `time.Time` in JSON
/// (`2026-12-04T07:15:25Z`): the fraction without trailing zeros.
fn go_time(text: &str) -> String {
    let Some((whole, fraction)) = text.strip_suffix('Z').and_then(|t| t.split_once('.')) else {
        return text.to_owned();
    };
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        format!("{whole}Z")
    } else {
        format!("{whole}.{fraction}Z")
    }
}

/// A ListObjects answer (`ListBucketResult`) as Dapr answers it: the AWS Go SDK's
/// `ListObjectsOutput` in JSON, its field names and nulls.
fn list_answer(xml: &str) -> Value {
    let (contents, rest) = blocks(xml, "Contents");
    let (prefixes, top) = blocks(&rest, "CommonPrefixes");
    let contents: Vec<Value> = contents
        .iter()
        .map(|object| {
            let (owner, object) = blocks(object, "Owner");
            let owner = owner.first().map(|owner| {
                json!({
                    "DisplayName": element(owner, "DisplayName"),
                    "ID": element(owner, "ID"),
                })
            });
            json!({
                "ChecksumAlgorithm": null,
                "ChecksumType": element(&object, "ChecksumType").unwrap_or_default(),
                "ETag": element(&object, "ETag"),
                "Key": element(&object, "Key"),
                "LastModified": element(&object, "LastModified").map(|time| go_time(&time)),
                "Owner": owner,
                "RestoreStatus": null,
                "Size": element(&object, "Size").and_then(|size| size.parse::<i64>().ok()),
                "StorageClass": element(&object, "StorageClass").unwrap_or_default(),
            })
        })
        .collect();
    let prefixes: Vec<Value> = prefixes
        .iter()
        .map(|prefix| json!({"Prefix": element(prefix, "Prefix")}))
        .collect();
    let or_null = |list: Vec<Value>| {
        if list.is_empty() {
            Value::Null
        } else {
            Value::Array(list)
        }
    };
    json!({
        "CommonPrefixes": or_null(prefixes),
        "Contents": or_null(contents),
        "Delimiter": element(&top, "Delimiter"),
        "EncodingType": element(&top, "EncodingType").unwrap_or_default(),
        "IsTruncated": element(&top, "IsTruncated").map(|yes| yes == "true"),
        "Marker": element(&top, "Marker"),
        "MaxKeys": element(&top, "MaxKeys").and_then(|n| n.parse::<i64>().ok()),
        "Name": element(&top, "Name"),
        "NextMarker": element(&top, "NextMarker"),
        "Prefix": element(&top, "Prefix"),
        "RequestCharged": "",
        "ResultMetadata": {},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_data_is_unquoted_as_dapr_does() {
        assert_eq!(unquote(&Bytes::from_static(b"\"hello\"")), "hello");
        assert_eq!(unquote(&Bytes::from_static(b"hello")), "hello");
        assert_eq!(unquote(&Bytes::from_static(b"{\"a\":1}")), "{\"a\":1}");
        assert_eq!(unquote(&Bytes::from_static(b"42")), "42");
        assert_eq!(unquote(&Bytes::from_static(b"null")), "");
        assert_eq!(unquote(&Bytes::from_static(b"\xff\x00")), &b"\xff\x00"[..]);
    }

    #[test]
    fn s3_list_options_have_dapr_s_defaults() {
        let options = ListOptions::parse(&Bytes::new()).unwrap();
        assert_eq!(options.max_results, 1000);
        let options =
            ListOptions::parse(&Bytes::from_static(br#"{"maxResults":0,"prefix":"a/"}"#)).unwrap();
        assert_eq!((options.max_results, options.prefix.as_str()), (1000, "a/"));
        let error = ListOptions::parse(&Bytes::from_static(b"\"x\""))
            .unwrap_err()
            .to_string();
        assert!(error.contains("maxResults"), "{error}");
        assert!(ListOptions::parse(&Bytes::from_static(br#"{"prefix":1}"#)).is_err());
    }

    #[test]
    fn s3_list_answers_have_the_go_sdk_s_shape() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>a/</Prefix><Marker></Marker><MaxKeys>2</MaxKeys><Delimiter>/</Delimiter><IsTruncated>true</IsTruncated><NextMarker>a/x&amp;y</NextMarker><Contents><Key>a/x&amp;y</Key><LastModified>2026-12-04T07:15:25.000Z</LastModified><ETag>&quot;abc&quot;</ETag><Size>5</Size><StorageClass>STANDARD</StorageClass><Owner><ID>o</ID><DisplayName>me</DisplayName></Owner></Contents><CommonPrefixes><Prefix>a/d/</Prefix></CommonPrefixes></ListBucketResult>"#;
        let answer = list_answer(xml);
        assert_eq!(answer["Name"], "b");
        assert_eq!(answer["Prefix"], "a/");
        assert_eq!(answer["Marker"], "");
        assert_eq!(answer["MaxKeys"], 2);
        assert_eq!(answer["IsTruncated"], true);
        assert_eq!(answer["NextMarker"], "a/x&y");
        assert_eq!(answer["Contents"][0]["Key"], "a/x&y");
        assert_eq!(answer["Contents"][0]["ETag"], "\"abc\"");
        assert_eq!(answer["Contents"][0]["Size"], 5);
        assert_eq!(
            answer["Contents"][0]["LastModified"],
            "2026-12-04T07:15:25Z"
        );
        assert_eq!(answer["Contents"][0]["Owner"]["ID"], "o");
        assert_eq!(answer["CommonPrefixes"][0]["Prefix"], "a/d/");
        let empty = list_answer("<ListBucketResult><Name>b</Name><Prefix/></ListBucketResult>");
        assert_eq!(empty["Contents"], Value::Null);
        assert_eq!(empty["Prefix"], "");
        assert_eq!(empty["NextMarker"], Value::Null);
    }

    fn s3_metadata(endpoint: &str, access_key: &str, secret_key: &str) -> ComponentMetadata {
        ComponentMetadata::new(
            tandem_spec::Component::new("files", "bindings.aws.s3"),
            [
                ("bucket", "signed"),
                ("endpoint", endpoint),
                ("region", "us-east-1"),
                ("accessKey", access_key),
                ("secretKey", secret_key),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        )
    }

    fn s3_call(operation: &str, data: &'static [u8], metadata: &[(&str, &str)]) -> InvokeRequest {
        InvokeRequest {
            operation: operation.into(),
            data: Bytes::from_static(data),
            metadata: metadata
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// Against moto checking signatures (`INITIAL_NO_AUTH_ACTION_COUNT`): it recomputes
    /// each S3 request's SigV4 signature with botocore, so a wrong canonical request — a
    /// key's encoding, the query, the content hash — is refused. Its first four requests
    /// go unchecked: the bucket, then an IAM user, its key and its rights. (moto checks
    /// only the `Authorization` header, not presigned URLs: those rest on AWS's example.)
    #[tokio::test]
    async fn s3_requests_are_signed_as_an_emulator_checking_signatures_wants() {
        let server =
            tandem_testkit::MotoServer::start_with_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", "4")]);
        let endpoint: http::Uri = server.endpoint().parse().unwrap();
        let timeout = Duration::from_secs(10);
        let anyone = Client::new(
            Credentials {
                access_key: "AKIDANYONE".to_owned(),
                secret_key: "anything".to_owned(),
                session_token: None,
            },
            "us-east-1".to_owned(),
            Some(endpoint.clone()),
        );
        let created = anyone
            .request(
                "s3",
                "PUT",
                &endpoint,
                "/signed",
                &[],
                Vec::new(),
                Bytes::new(),
                true,
                timeout,
            )
            .await
            .unwrap();
        assert_eq!(created.status, 200);
        let (access_key, secret_key) =
            crate::aws::test_support::signing_user(&anyone, timeout).await;

        let good = S3Binding::build(&s3_metadata(&server.endpoint(), &access_key, &secret_key))
            .await
            .unwrap();
        let name = "dir/été & co (1)+~.txt";
        good.invoke(s3_call("create", b"signed data", &[("key", name)]))
            .await
            .unwrap();
        let got = good
            .invoke(s3_call("get", b"", &[("key", name)]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.data, "signed data");
        let listed = good
            .invoke(s3_call("list", br#"{"prefix":"dir/","maxResults":5}"#, &[]))
            .await
            .unwrap()
            .unwrap();
        let listed: Value = serde_json::from_slice(&listed.data).unwrap();
        assert_eq!(listed["Contents"][0]["Key"], name, "{listed}");
        good.invoke(s3_call("delete", b"", &[("key", name)]))
            .await
            .unwrap();

        // A wrong secret stops the start, naming the field but not the secret.
        let error = S3Binding::build(&s3_metadata(
            &server.endpoint(),
            &access_key,
            "not-the-secret",
        ))
        .await
        .err()
        .expect("a wrong secret is refused")
        .to_string();
        assert!(
            error.contains("(secretKey)") && error.contains("SignatureDoesNotMatch"),
            "{error}"
        );
        assert!(!error.contains("not-the-secret"), "{error}");
        // An access key S3 does not know, likewise.
        let error = S3Binding::build(&s3_metadata(&server.endpoint(), "AKIDNOBODY", &secret_key))
            .await
            .err()
            .expect("an unknown key is refused")
            .to_string();
        assert!(error.contains("(accessKey)"), "{error}");
        assert!(!error.contains(&secret_key), "{error}");
    }

    #[test]
    fn s3_tags_are_dapr_s_pairs_url_encoded() {
        assert_eq!(
            tagging("team=a b, env=prod").unwrap().as_deref(),
            Some("team=a%20b&env=prod")
        );
        for bad in ["team", "team=", "=x", "a=1,,b=2"] {
            let error = tagging(bad).unwrap_err().to_string();
            assert!(error.contains("tags"), "{bad}: {error}");
        }
    }

    fn s3_binding(bucket: &str, endpoint: Option<&str>, path_style: bool) -> S3Binding {
        let endpoint: Option<http::Uri> = endpoint.map(|text| text.parse().unwrap());
        S3Binding {
            client: Client::new(
                Credentials {
                    access_key: "AK".to_owned(),
                    secret_key: "SK".to_owned(),
                    session_token: None,
                },
                "eu-west-1".to_owned(),
                endpoint.clone(),
            ),
            bucket: bucket.to_owned(),
            path_style: path_style || endpoint.is_some(),
            endpoint_text: endpoint.as_ref().map(ToString::to_string),
            endpoint,
            plain_http: false,
            decode_base64: false,
            encode_base64: false,
            storage_class: None,
        }
    }

    #[test]
    fn s3_objects_are_addressed_virtual_hosted_or_path_style() {
        let url = |binding: &S3Binding, key: &str| {
            let (base, path) = binding.address(Some(key));
            format!(
                "{}://{}{path}",
                base.scheme_str().unwrap(),
                base.authority().unwrap()
            )
        };
        let plain = s3_binding("photos", None, false);
        assert_eq!(
            url(&plain, "a b/c.jpg"),
            "https://photos.s3.eu-west-1.amazonaws.com/a%20b/c.jpg"
        );
        assert_eq!(
            plain.location("a/c.jpg"),
            "https://photos.s3.amazonaws.com/a/c.jpg"
        );
        let forced = s3_binding("photos", None, true);
        assert_eq!(
            url(&forced, "c.jpg"),
            "https://s3.eu-west-1.amazonaws.com/photos/c.jpg"
        );
        assert_eq!(
            forced.location("c.jpg"),
            "https://s3.amazonaws.com/photos/c.jpg"
        );
        let dotted = s3_binding("my.photos", None, false);
        assert_eq!(
            url(&dotted, "c.jpg"),
            "https://s3.eu-west-1.amazonaws.com/my.photos/c.jpg"
        );
        let emulator = s3_binding("photos", Some("http://localhost:4566"), false);
        assert_eq!(
            url(&emulator, "c.jpg"),
            "http://localhost:4566/photos/c.jpg"
        );
        assert!(virtual_hostable("a-b.c", true) && !virtual_hostable("Photos", false));
        assert!(!virtual_hostable("-a", false) && !virtual_hostable("a..b", true));
    }

    #[test]
    fn s3_go_times_drop_zero_fractions() {
        assert_eq!(go_time("2026-12-04T07:15:25.000Z"), "2026-12-04T07:15:25Z");
        assert_eq!(
            go_time("2026-12-04T07:15:25.120Z"),
            "2026-12-04T07:15:25.12Z"
        );
        assert_eq!(go_time("2026-12-04T07:15:25Z"), "2026-12-04T07:15:25Z");
    }

    #[test]
    fn s3_request_flags_read_dapr_s_truthy_words() {
        let metadata = HashMap::from([("encodeBase64".to_owned(), "Yes".to_owned())]);
        assert!(truthy_or(&metadata, "encodeBase64", false));
        assert!(!truthy_or(&metadata, "decodeBase64", false));
        assert!(truthy_or(&metadata, "decodeBase64", true));
        let metadata = HashMap::from([("encodeBase64".to_owned(), "nope".to_owned())]);
        assert!(!truthy_or(&metadata, "encodeBase64", true));
    }
}
