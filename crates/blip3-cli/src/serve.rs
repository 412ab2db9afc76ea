//! `blip3 serve`: the OpenAI-compatible server on a loaded model.

use std::process::ExitCode;

use anyhow::{Context, Result};
use blip3_engine::serving::EngineConfig;
use blip3_server::media::MediaPolicy;
use blip3_server::{Server, ServerConfig};

use crate::commands::{load, model_dir};
use crate::ServeArgs;

pub fn serve(mut args: ServeArgs) -> Result<ExitCode> {
    let spec = args.load.model.clone();
    let dir = model_dir(&spec)?;
    let model_name = args.served_model_name.clone().unwrap_or_else(|| {
        if dir == spec {
            dir.canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "blip3".into())
        } else {
            spec.to_string_lossy().into_owned()
        }
    });
    eprintln!("loading {} ...", dir.display());
    args.load.model = dir;
    let pipeline = load(&args.load)?;
    let config = ServerConfig {
        model_name: model_name.clone(),
        max_request_bytes: args.max_request_bytes,
        media: MediaPolicy {
            media_root: args.media_root.clone(),
            max_image_bytes: args.max_image_bytes,
            allow_remote: args.allow_remote_media,
            remote_timeout: std::time::Duration::from_secs(args.remote_media_timeout_s.max(1)),
            allowed_hosts: args.allow_media_hosts.clone(),
            ..MediaPolicy::default()
        },
        max_images: args.max_images,
        engine: EngineConfig {
            queue_size: args.queue_size,
            max_batch: args.max_batch,
            max_pixels: args.load.max_pixels,
            vision_cache_bytes: args.vision_cache_mib << 20,
            vision_cache_dir: args.vision_cache_dir.clone(),
            ..EngineConfig::default()
        },
    };
    let server = Server::start(pipeline, config).context("starting the engine")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let addr = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let local = listener.local_addr()?;
        eprintln!("serving {model_name} on http://{local}/v1 (Ctrl-C to stop)");
        server
            .serve(listener, shutdown_signal())
            .await
            .context("serving")?;
        eprintln!("stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
