//! `docker-local`: the Docker engine on this server, through berth's bollard facade.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::{
    AddressRequest, BuildContext, ContainerFacts, ContainerSpec, ImageConfig, NetworkAddress, NetworkError,
    OnOutput, Result, Scheduler, Stopped,
};
use crate::engine::Engine;
use crate::helper_image::{self, HelperImageError};
use crate::network;

impl Scheduler for Engine {
    fn build_image(
        &self,
        tag: &str,
        dockerfile: &str,
        labels: &HashMap<String, String>,
        build_args: &HashMap<String, String>,
        context: BuildContext,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<()> {
        Engine::build_image(self, tag, dockerfile, labels, build_args, context, on_line)
    }

    fn image_config(&self, image: &str) -> Result<ImageConfig> {
        Engine::image_config(self, image)
    }

    fn image_volumes(&self, image: &str) -> Result<Vec<String>> {
        Engine::image_volumes(self, image)
    }

    fn image_exists(&self, image: &str) -> Result<bool> {
        Engine::image_exists(self, image)
    }

    fn commit(&self, container: &str, repo: &str, tag: &str, config: &ImageConfig) -> Result<()> {
        Engine::commit(self, container, repo, tag, config)
    }

    fn helper_image(&self) -> std::result::Result<String, HelperImageError> {
        helper_image::ensure(self)
    }

    fn ensure_app_volume(
        &self,
        name: &str,
        app: &str,
        driver: Option<&str>,
        options: &HashMap<String, String>,
    ) -> Result<bool> {
        Engine::ensure_app_volume(self, name, app, driver, options)
    }

    fn ensure_anonymous_volume(&self, name: &str, app: &str, path: &str) -> Result<bool> {
        Engine::ensure_anonymous_volume(self, name, app, path)
    }

    fn require_volume(&self, name: &str) -> Result<()> {
        Engine::require_volume(self, name)
    }

    fn create_container(&self, spec: &ContainerSpec) -> Result<String> {
        Engine::create_container(self, spec)
    }

    fn start_container(&self, name: &str) -> Result<()> {
        Engine::start_container(self, name)
    }

    fn stop(&self, name: &str, timeout: Duration) -> Result<Stopped> {
        Engine::stop_gracefully(self, name, timeout)
    }

    fn remove_container(&self, name: &str) -> Result<()> {
        Engine::remove_container(self, name)
    }

    fn rename_container(&self, name: &str, new_name: &str) -> Result<()> {
        Engine::rename_container(self, name, new_name)
    }

    fn inspect_container(&self, name: &str) -> Result<Option<ContainerFacts>> {
        Engine::inspect_container(self, name)
    }

    fn app_containers(&self, app: &str) -> Result<Vec<String>> {
        Engine::app_containers(self, app)
    }

    fn run_attached(&self, name: &str, on_output: OnOutput<'_>) -> Result<i64> {
        Engine::run_attached(self, name, on_output)
    }

    fn logs(&self, name: &str, follow: bool, tail: Option<usize>, on_output: OnOutput<'_>) -> Result<()> {
        Engine::logs(self, name, follow, tail, on_output)
    }

    fn http_status(&self, upstream: SocketAddr, path: &str) -> std::io::Result<u16> {
        http_status(upstream, path)
    }

    fn allocate_address(
        &self,
        request: &AddressRequest,
    ) -> std::result::Result<NetworkAddress, NetworkError> {
        network::allocate(self, request)
    }
}

/// The status code of `GET path` at an address (HTTP/1.0, no dependencies).
fn http_status(upstream: SocketAddr, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&upstream, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: berth-healthcheck\r\n\r\n")?;
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < 12 {
        let n = stream.read(&mut head[read..])?;
        if n == 0 {
            break;
        }
        read += n;
    }
    let text = String::from_utf8_lossy(&head[..read]);
    text.split_whitespace().nth(1).and_then(|code| code.parse().ok()).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not an HTTP answer: {text:?}"))
    })
}
