"""``qvd-client``: list a user's desktops and connect to one through the L7R.

``protocol`` is the pure HTTP side (h11), ``settings`` the remembered host and user,
``main`` the CLI with the TLS socket, the local ``nxproxy -S`` and the relay.
"""

from qvd.client.protocol import ClientError, ClientProtocol, Progress, Switched, VmList

__all__ = ["ClientError", "ClientProtocol", "Progress", "Switched", "VmList"]
