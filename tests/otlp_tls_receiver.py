"""A minimal OTLP/HTTP receiver over TLS, for the test that the binaries export
to an https:// collector: prints one JSON line per request (path, the
x-tenant header, body size) and answers 200.

Usage: otlp_tls_receiver.py PORT CERT.pem KEY.pem
"""
import http.server
import json
import ssl
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        line = {"path": self.path, "tenant": self.headers.get("x-tenant"), "bytes": len(body)}
        print(json.dumps(line), flush=True)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[2], sys.argv[3])
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
