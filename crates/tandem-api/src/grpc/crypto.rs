//! The crypto API's gRPC door. The subtle calls are one-to-one with
//! [`tandem_runtime::Crypto`]; `EncryptAlpha1`/`DecryptAlpha1` are bidirectional streams:
//! the first message carries the options (it must come within 5 seconds, as daprd
//! waits), every message may carry a chunk `{data, seq}` with `seq` counting from 0. The
//! answer is a stream of chunks numbered the same way: for encryption the header first,
//! then each sealed segment once it is complete; for decryption only verified plaintext.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tandem_proto::common::StreamPayload;
use tandem_proto::runtime as pb;
use tandem_runtime::{EncryptOptions, Error, Runtime, STREAM_CHUNK};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::ApiError;

pub(super) type EncryptStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::EncryptResponse, Status>> + Send>>;
pub(super) type DecryptStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::DecryptResponse, Status>> + Send>>;

/// daprd's wait for the first message.
const FIRST_MESSAGE: Duration = Duration::from_secs(5);
/// How many answers may wait for the app to read them.
const WAITING: usize = 4;

fn status(error: Error) -> Status {
    ApiError::from(error).into()
}

async fn first<T>(incoming: &mut Streaming<T>) -> Result<T, Status> {
    match tokio::time::timeout(FIRST_MESSAGE, incoming.message()).await {
        Err(_) => Err(status(Error::CryptoBadRequest(
            "error waiting for first message: context deadline exceeded".into(),
        ))),
        Ok(Err(error)) => Err(status(Error::Crypto(format!(
            "error receiving the first message: {}",
            error.message()
        )))),
        Ok(Ok(None)) => Err(status(Error::Crypto(
            "error receiving the first message: EOF".into(),
        ))),
        Ok(Ok(Some(message))) => Ok(message),
    }
}

/// Counts the chunks of one direction.
#[derive(Default)]
struct Sequence(u64);

impl Sequence {
    /// Checks an incoming chunk's number.
    fn check(&mut self, payload: &StreamPayload) -> Result<(), Error> {
        if payload.seq != self.0 {
            return Err(Error::Crypto(format!(
                "invalid sequence number received: {} (expected: {})",
                payload.seq, self.0
            )));
        }
        self.0 += 1;
        Ok(())
    }
}

/// Sends `data` as numbered chunks; `false` once the app has gone.
async fn send<T>(
    out: &mpsc::Sender<Result<T, Status>>,
    sequence: &mut Sequence,
    data: &[u8],
    wrap: fn(StreamPayload) -> T,
) -> bool {
    for chunk in data.chunks(STREAM_CHUNK) {
        let payload = StreamPayload {
            data: chunk.to_vec(),
            seq: sequence.0,
        };
        sequence.0 += 1;
        if out.send(Ok(wrap(payload))).await.is_err() {
            return false;
        }
    }
    true
}

pub(super) async fn encrypt(
    runtime: &Arc<Runtime>,
    request: Request<Streaming<pb::EncryptRequest>>,
) -> Result<Response<EncryptStream>, Status> {
    let mut incoming = request.into_inner();
    let first = first(&mut incoming).await?;
    // daprd's checks, in its order: the options, then the component.
    let Some(options) = first.options else {
        return Err(status(Error::CryptoBadRequest(
            "first message does not contain the required options".into(),
        )));
    };
    if options.key_name.is_empty() {
        return Err(status(Error::CryptoBadRequest(
            "missing property 'keyName' in the options message".into(),
        )));
    }
    if options.key_wrap_algorithm.is_empty() {
        return Err(status(Error::CryptoBadRequest(
            "missing property 'keyWrapAlgorithm' in the options message".into(),
        )));
    }
    let mut encryptor = runtime
        .crypto()
        .encryptor(&EncryptOptions {
            component: options.component_name,
            key_name: options.key_name,
            key_wrap_algorithm: options.key_wrap_algorithm,
            data_encryption_cipher: options.data_encryption_cipher,
            omit_decryption_key_name: options.omit_decryption_key_name,
            decryption_key_name: options.decryption_key_name,
        })
        .await
        .map_err(status)?;
    let (out, answers) = mpsc::channel(WAITING);
    let wrap = |payload| pb::EncryptResponse {
        payload: Some(payload),
    };
    tokio::spawn(async move {
        let mut received = Sequence::default();
        let mut sent = Sequence::default();
        if !send(&out, &mut sent, encryptor.header(), wrap).await {
            return;
        }
        let mut payload = first.payload;
        loop {
            if let Some(chunk) = payload.take() {
                let sealed = received.check(&chunk).and_then(|()| {
                    encryptor
                        .update(&chunk.data)
                        .map_err(|e| Error::Crypto(e.to_string()))
                });
                match sealed {
                    Ok(sealed) => {
                        if !send(&out, &mut sent, &sealed, wrap).await {
                            return;
                        }
                    }
                    Err(error) => {
                        let _ = out.send(Err(status(error))).await;
                        return;
                    }
                }
            }
            match incoming.message().await {
                Ok(None) => break,
                Ok(Some(message)) if message.options.is_some() => {
                    let error = Error::Crypto("options found in non-leading message".into());
                    let _ = out.send(Err(status(error))).await;
                    return;
                }
                Ok(Some(message)) => payload = message.payload,
                Err(error) => {
                    let error =
                        Error::Crypto(format!("error receiving message: {}", error.message()));
                    let _ = out.send(Err(status(error))).await;
                    return;
                }
            }
        }
        send(&out, &mut sent, &encryptor.finish(), wrap).await;
    });
    Ok(Response::new(Box::pin(ReceiverStream::new(answers))))
}

pub(super) async fn decrypt(
    runtime: &Arc<Runtime>,
    request: Request<Streaming<pb::DecryptRequest>>,
) -> Result<Response<DecryptStream>, Status> {
    let mut incoming = request.into_inner();
    let first = first(&mut incoming).await?;
    let Some(options) = first.options else {
        return Err(status(Error::CryptoBadRequest(
            "first message does not contain the required options".into(),
        )));
    };
    let mut session = runtime
        .crypto()
        .decrypt_session(&options.component_name, &options.key_name)
        .map_err(status)?;
    let (out, answers) = mpsc::channel(WAITING);
    let wrap = |payload| pb::DecryptResponse {
        payload: Some(payload),
    };
    tokio::spawn(async move {
        let mut received = Sequence::default();
        let mut sent = Sequence::default();
        let mut payload = first.payload;
        loop {
            if let Some(chunk) = payload.take() {
                let opened = match received.check(&chunk) {
                    Ok(()) => session.update(&chunk.data).await,
                    Err(error) => Err(error),
                };
                match opened {
                    Ok(plaintext) => {
                        if !send(&out, &mut sent, &plaintext, wrap).await {
                            return;
                        }
                    }
                    Err(error) => {
                        let _ = out.send(Err(status(error))).await;
                        return;
                    }
                }
            }
            match incoming.message().await {
                Ok(None) => break,
                Ok(Some(message)) if message.options.is_some() => {
                    let error = Error::Crypto("options found in non-leading message".into());
                    let _ = out.send(Err(status(error))).await;
                    return;
                }
                Ok(Some(message)) => payload = message.payload,
                Err(error) => {
                    let error =
                        Error::Crypto(format!("error receiving message: {}", error.message()));
                    let _ = out.send(Err(status(error))).await;
                    return;
                }
            }
        }
        match session.finish().await {
            Ok(plaintext) => {
                send(&out, &mut sent, &plaintext, wrap).await;
            }
            Err(error) => {
                let _ = out.send(Err(status(error))).await;
            }
        }
    });
    Ok(Response::new(Box::pin(ReceiverStream::new(answers))))
}

/// `SubtleGetKeyAlpha1`: daprd checks the component, then the format.
pub(super) async fn get_key(
    runtime: &Runtime,
    request: pb::SubtleGetKeyRequest,
) -> Result<Response<pb::SubtleGetKeyResponse>, Status> {
    use pb::subtle_get_key_request::KeyFormat as Format;
    let crypto = runtime.crypto();
    crypto
        .check_component(&request.component_name)
        .map_err(status)?;
    let format = match Format::try_from(request.format) {
        Ok(Format::Pem) => tandem_runtime::KeyFormat::Pem,
        Ok(Format::Json) => tandem_runtime::KeyFormat::Json,
        Err(_) => {
            return Err(status(Error::CryptoBadRequest("invalid key format".into())));
        }
    };
    let (name, public_key) = crypto
        .get_key(&request.component_name, &request.name, format)
        .await
        .map_err(status)?;
    Ok(Response::new(pb::SubtleGetKeyResponse { name, public_key }))
}
