// A stock Node `ws` client: connect, ask `ping`, close normally.
//
// Usage: node close.cjs WS_URL (with `ws` on NODE_PATH). Prints one JSON
// line: the acknowledgement's and the reply's `type`, and the code of the
// `close` event, which `ws` reports as 1006 when the server never sent a
// Close frame back (a browser's `wasClean: false`).
const WebSocket = require('ws');

const ws = new WebSocket(process.argv[2]);
const seen = {};
const give_up = setTimeout(() => {
  console.log(JSON.stringify({ ...seen, error: 'no close event within 20 s' }));
  process.exit(2);
}, 20000);

ws.on('message', (data) => {
  const frame = JSON.parse(data.toString());
  if (seen.ack === undefined) {
    seen.ack = frame.type;
    ws.send(JSON.stringify({ type: 'ping', id: 'node' }));
  } else if (seen.reply === undefined) {
    seen.reply = frame.type;
    ws.close(1000, 'done');
  }
});
ws.on('error', (error) => {
  seen.error = String(error);
});
ws.on('close', (code, reason) => {
  clearTimeout(give_up);
  console.log(JSON.stringify({ ...seen, code, reason: reason.toString() }));
});
