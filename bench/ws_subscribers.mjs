// N WebSocket subscribers for bench/websocket.py, in Node.js (node --experimental-websocket):
// 1,000 Python clients decoding ~10,000 messages a second need more than a core, and then the
// benchmark measures its own clients. Prints "ready" once every subscription is confirmed, then
// after `seconds` one JSON line: {"pairs": [[marker value, receipt time in epoch seconds], ...],
// "frames": metric_data messages received in all}.
//
//   node --experimental-websocket bench/ws_subscribers.mjs <ws base url> <count> <seconds> '<extra metrics JSON>'
const [url, countArg, secondsArg, extraArg] = process.argv.slice(2);
const count = Number(countArg);
const seconds = Number(secondsArg);
const extra = JSON.parse(extraArg || "[]"); // each subscriber i also watches extra[i % extra.length]
const received = [];
let subscribed = 0;
let frames = 0;
const sockets = [];
for (let i = 0; i < count; i++) {
  const ws = new WebSocket(`${url}/ws/metrics/sub${i}`);
  sockets.push(ws);
  ws.onopen = () => {
    const metrics = ["bench.marker"];
    if (extra.length) metrics.push(extra[i % extra.length]);
    ws.send(JSON.stringify({ type: "subscribe", metrics, window: "1m", interval_ms: 100 }));
  };
  ws.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "metric_data") frames++;
    if (message.type === "subscribed" && ++subscribed === count) {
      console.log("ready");
      setTimeout(() => {
        for (const s of sockets) s.close();
        // a pipe is written asynchronously: exit only once the whole line is out
        process.stdout.write(JSON.stringify({ pairs: received, frames }) + "\n", () => process.exit(0));
      }, seconds * 1000);
    } else if (message.type === "metric_data" && message.data.metric === "bench.marker" && message.data.value !== null) {
      received.push([message.data.value, Date.now() / 1000]);
    }
  };
  ws.onerror = (event) => {
    console.error(`subscriber ${i}: ${event.message || "error"}`);
  };
}
