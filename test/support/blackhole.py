"""A TCP address that never completes a handshake: a listening socket with a backlog of zero
whose accept queue is filled at once, so the kernel drops every later SYN. A proxy dialling it
meets its connect timeout, as with a host that drops packets. Prints the port, then waits."""
import socket
import sys
import time

host = sys.argv[1]
port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind((host, port))
listener.listen(0)
port = listener.getsockname()[1]
fillers = []
for _ in range(3):
    filler = socket.socket()
    filler.setblocking(False)
    try:
        filler.connect((host, port))
    except BlockingIOError:
        pass
    fillers.append(filler)
time.sleep(0.2)
print(port, flush=True)
while True:
    time.sleep(3600)
