//! PortForward's far end: a TCP connection to a port on the pod's loopback, from inside its
//! network namespace (what kubelet's port-forward means: the pod's `localhost:<port>`).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use tokio::net::{TcpSocket, TcpStream};

use crate::SandboxError;
use crate::record::{SandboxRecord, SandboxState};

pub(crate) async fn connect(record: &SandboxRecord, port: u16) -> Result<TcpStream, SandboxError> {
    if record.state() != SandboxState::Ready {
        return Err(SandboxError::NotReady {
            id: record.id.clone(),
            action: "port-forward to",
        });
    }
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    let first = attempt(record.netns.as_deref(), v4).await;
    let result = match first {
        // A server listening on [::1] only: try it too, as kubelet's port-forward does.
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            attempt(record.netns.as_deref(), v6).await.map_err(|_| e)
        }
        other => other,
    };
    result.map_err(|source| SandboxError::PortForward {
        id: record.id.clone(),
        port,
        source,
    })
}

async fn attempt(netns: Option<&Path>, addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = match netns {
        // The socket belongs to the namespace it is created in, whichever thread connects it.
        Some(netns) => {
            let netns = netns.to_path_buf();
            tokio::task::spawn_blocking(move || {
                berth_namespace::run_in_netns(&netns, || new_socket(addr))
            })
            .await
            .map_err(io::Error::other)?
            .map_err(io::Error::other)??
        }
        None => new_socket(addr)?,
    };
    socket.connect(addr).await
}

fn new_socket(addr: SocketAddr) -> io::Result<TcpSocket> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_nodelay(true)?;
    Ok(socket)
}
