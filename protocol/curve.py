"""CURVE authentication and encryption for the render protocol (ZeroMQ's Ironhouse pattern).

One key folder, made once with `autosim keys --out DIR` and shared by the farm (a Kubernetes
Secret, a read-only NFS folder):

    DIR/server.key, DIR/server.key_secret    the servers' key pair
    DIR/client.key, DIR/client.key_secret    the optimizer's (and watchers') key pair
    DIR/authorized/*.key                     client public keys a server accepts

A server (`--curve DIR`) uses the server secret key and accepts only clients whose public key is
in DIR/authorized (pyzmq's ThreadAuthenticator answering ZAP); a client uses the client pair
and the server's public key. An unauthenticated peer's handshake fails: it gets nothing, not
even an error reply. A server on a non-loopback address refuses to start without keys.
pyzmq only (no bpy): Blender's Python runs it for `blender -b ... serve.py -- --curve DIR`.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
from pathlib import Path
from typing import Any

SERVER, CLIENT, AUTHORIZED = "server", "client", "authorized"


class KeysError(ValueError):
    """A key folder that is missing, incomplete or unreadable; the message names the file."""


def generate(out: str | os.PathLike[str]) -> Path:
    """Write a server and a client key pair and authorize the client; returns the folder."""
    import zmq.auth

    root = Path(out)
    if (root / f"{SERVER}.key_secret").exists():
        raise KeysError(f"{root} already holds keys (remove them first to make new ones)")
    (root / AUTHORIZED).mkdir(parents=True, exist_ok=True)
    for name in (SERVER, CLIENT):
        zmq.auth.create_certificates(str(root), name)
    shutil.copy(root / f"{CLIENT}.key", root / AUTHORIZED / f"{CLIENT}.key")
    for secret in root.glob("*.key_secret"):
        secret.chmod(0o600)
    return root


def _load(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    import zmq.auth

    if not path.is_file():
        raise KeysError(f"{path}: no such key file (make a key folder with `autosim keys "
                        f"--out DIR`)")
    try:
        public, private = zmq.auth.load_certificate(str(path))
    except (ValueError, OSError) as exc:
        raise KeysError(f"{path}: not a ZeroMQ certificate ({exc})") from None
    if secret and not private:
        raise KeysError(f"{path}: holds no secret key")
    return public, private


def is_loopback(endpoint: str) -> bool:
    """tcp://127.0.0.1:..., tcp://localhost:..., tcp://[::1]:..., ipc://, inproc://."""
    if not endpoint.startswith("tcp://"):
        return endpoint.startswith(("ipc://", "inproc://"))
    host = endpoint[len("tcp://"):].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # '*', an interface name or a host name: not provably loopback
        return False


def secure_server(sock: Any, context: Any, keys: str | os.PathLike[str]) -> Any:
    """Make a ROUTER socket a CURVE server that admits DIR/authorized; returns the running
    authenticator (stop() it when the socket closes). Call before bind()."""
    from zmq.auth.thread import ThreadAuthenticator

    root = Path(keys)
    allowed = root / AUTHORIZED
    server_keys(sock, root)
    if not allowed.is_dir() or not any(allowed.glob("*.key")):
        raise KeysError(f"{allowed}: no authorized client keys (*.key)")
    auth = ThreadAuthenticator(context)
    auth.start()
    auth.configure_curve(domain="*", location=str(allowed))
    return auth


def server_keys(sock: Any, keys: str | os.PathLike[str]) -> None:
    """Make a socket a CURVE server with the folder's server pair; the authenticator already
    running in its context (secure_server) decides which clients it admits."""
    public, secret = _load(Path(keys) / f"{SERVER}.key_secret", secret=True)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True


def secure_client(sock: Any, keys: str | os.PathLike[str]) -> None:
    """Give a client socket the client key pair and the server's public key (before connect)."""
    root = Path(keys)
    public, secret = _load(root / f"{CLIENT}.key_secret", secret=True)
    server_public, _ = _load(root / f"{SERVER}.key", secret=False)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_serverkey = server_public
