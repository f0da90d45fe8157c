//! OpenAI images: `POST /v1/images/generations` (JSON) and `POST /v1/images/edits`
//! (multipart). The parameters, answers and usage formulas are documented at
//! the crate root.

use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, Uri};
use serde_json::{json, Value};

use crate::errors::{invalid_request, missing_param, openai_param_error, Family};
use crate::exchange::{admit, admit_form, gate, unix_now, Admitted, App, Auth};
use crate::form::Form;
use crate::params;
use crate::usage::{gpt_image_output_tokens, text_tokens, GPT_IMAGE_INPUT_IMAGE_TOKENS};

/// A 1×1 transparent RGBA PNG (68 bytes), base64: every `b64_json` image.
pub const MOCK_PNG_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAAC0lEQVR42mNgAAIAAAUAAen63NgAAAAASUVORK5CYII=";

/// The model when a request names none (OpenAI's default for both endpoints).
const DEFAULT_MODEL: &str = "dall-e-2";
/// `n` is 1–10 (dall-e-3: 1).
const MAX_IMAGES: i64 = 10;
/// Form parts that are input images (the SDK sends `image[]` for a list).
const IMAGE_PARTS: [&str; 2] = ["image", "image[]"];

/// Which of OpenAI's image models a name is, by prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    DallE2,
    DallE3,
    /// `gpt-image-*`: always `b64_json`, and the only one reporting `usage`.
    GptImage,
    /// Any other name: any size, any of the qualities, no usage.
    Other,
}

impl Kind {
    fn of(model: &str) -> Self {
        if model.starts_with("gpt-image") {
            Self::GptImage
        } else if model.starts_with("dall-e-3") {
            Self::DallE3
        } else if model.starts_with("dall-e-2") {
            Self::DallE2
        } else {
            Self::Other
        }
    }

    fn sizes(self) -> Option<&'static [&'static str]> {
        match self {
            Self::DallE2 => Some(&["256x256", "512x512", "1024x1024"]),
            Self::DallE3 => Some(&["1024x1024", "1792x1024", "1024x1792"]),
            Self::GptImage => Some(&["1024x1024", "1536x1024", "1024x1536", "auto"]),
            Self::Other => None,
        }
    }

    fn qualities(self) -> &'static [&'static str] {
        match self {
            Self::DallE2 => &["standard", "auto"],
            Self::DallE3 => &["standard", "hd", "auto"],
            Self::GptImage => &["low", "medium", "high", "auto"],
            Self::Other => &["standard", "hd", "low", "medium", "high", "auto"],
        }
    }
}

/// The parameters of one image request, validated, with defaults filled in.
#[derive(Debug)]
struct ImageRequest {
    kind: Kind,
    prompt: String,
    n: u64,
    size: String,
    quality: String,
    b64: bool,
}

impl ImageRequest {
    /// Reads and checks the parameters (recording the model in the stats).
    #[allow(clippy::result_large_err)]
    fn read(app: &App, json: &Value) -> Result<Self, Response> {
        let model = params::string(json, "model")?.unwrap_or(DEFAULT_MODEL);
        app.stats().record_model(model);
        let kind = Kind::of(model);
        let prompt = params::required(json, "prompt")?.to_owned();
        let n = params::integer(json, "n", 1, MAX_IMAGES)?.unwrap_or(1);
        if kind == Kind::DallE3 && n != 1 {
            return Err(openai_param_error("Invalid 'n': dall-e-3 only supports n=1.", "n", "invalid_value"));
        }
        let size = match kind.sizes() {
            Some(allowed) => params::one_of(json, "size", allowed)?,
            None => params::string(json, "size")?,
        }
        .unwrap_or("1024x1024")
        .to_owned();
        let default_quality = if kind == Kind::GptImage { "auto" } else { "standard" };
        let quality = params::one_of(json, "quality", kind.qualities())?.unwrap_or(default_quality).to_owned();
        let format = params::one_of(json, "response_format", &["url", "b64_json"])?;
        let b64 = kind == Kind::GptImage || format == Some("b64_json");
        #[allow(clippy::cast_sign_loss)] // at least 1
        let n = n as u64;
        Ok(Self { kind, prompt, n, size, quality, b64 })
    }
}

/// `POST /v1/images/generations`.
pub(crate) async fn generations(app: App, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let req = match admit(&app, Family::OpenAi, Auth::Bearer, &uri, &headers, &body) {
        Ok(req) => req,
        Err(response) => return response,
    };
    let image = match ImageRequest::read(&app, &req.json) {
        Ok(image) => image,
        Err(response) => return response,
    };
    if let Some(response) = req.before_answer().await {
        return response;
    }
    answer(&req, &image, 0)
}

/// `POST /v1/images/edits`.
pub(crate) async fn edits(app: App, request: Request) -> Response {
    let uri = request.uri().clone();
    let headers = request.headers().clone();
    if let Err(response) = gate(&app, Family::OpenAi, Auth::Bearer, &uri, &headers) {
        return response;
    }
    let mut form = match Form::read(request, &["image", "image[]", "mask"]).await {
        Ok(form) => form,
        Err(message) => return invalid_request(Family::OpenAi, &message),
    };
    app.stats().record_files(form.files_summary());
    let input_images = form.files_named(&IMAGE_PARTS).count() as u64;
    let knob_text = form.knob_text();
    let fields = Value::Object(std::mem::take(&mut form.fields));
    let req = match admit_form(&app, Family::OpenAi, &headers, knob_text.as_bytes(), fields) {
        Ok(req) => req,
        Err(response) => return response,
    };
    let image = match ImageRequest::read(&app, &req.json) {
        Ok(image) => image,
        Err(response) => return response,
    };
    if input_images == 0 {
        return missing_param("image");
    }
    if let Some(response) = req.before_answer().await {
        return response;
    }
    answer(&req, &image, input_images)
}

/// `{"created", "data": [n images], "usage"?}`.
fn answer(req: &Admitted, image: &ImageRequest, input_images: u64) -> Response {
    let data: Vec<Value> = (0..image.n)
        .map(|i| {
            let mut item = if image.b64 {
                json!({"b64_json": MOCK_PNG_BASE64})
            } else {
                json!({"url": format!("https://mock.invalid/images/{}-{i}.png", req.sequence())})
            };
            if image.kind == Kind::DallE3 {
                item["revised_prompt"] = json!(format!("A mock illustration of: {}", image.prompt));
            }
            item
        })
        .collect();
    let mut body = json!({"created": unix_now(), "data": data});
    if image.kind == Kind::GptImage && !req.no_usage() {
        let text = text_tokens(&image.prompt);
        let images = GPT_IMAGE_INPUT_IMAGE_TOKENS * input_images;
        let output = image.n * gpt_image_output_tokens(&image.quality, &image.size);
        body["usage"] = json!({
            "input_tokens": text + images,
            "input_tokens_details": {"text_tokens": text, "image_tokens": images},
            "output_tokens": output,
            "total_tokens": text + images + output,
        });
    }
    req.json_answer(&body)
}
