// A Node.js client library (ioredis) driving one server through pipelines,
// MULTI, pub/sub, MONITOR and scripting; prints what it saw as JSON with
// addresses and timestamps left out, so that the output through Larder can be
// compared with the output against redis-server (test_node_client.py).
//
//   NODE_PATH=<dir with node_modules> node client_check.js PORT
'use strict';
const Redis = require('ioredis');

const port = Number(process.argv[2]);
const opts = { host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 1 };

function withTimeout(promise, ms, what) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

async function main() {
  const out = {};
  const r = new Redis(opts);
  await r.connect();
  await r.del('n:list', 'n:count', 'n:h');

  // Pipelining: replies in order, errors in place.
  out.pipeline = await r.pipeline()
      .set('n:k', 'v').get('n:k').incr('n:count').incr('n:k').rpush('n:list', 'a', 'b')
      .lrange('n:list', 0, -1).hset('n:h', 'f', '1').hgetall('n:h')
      .exec();
  out.pipeline = out.pipeline.map(([err, value]) => (err ? `error: ${err.message}` : value));

  // MULTI: queued, executed, and a transaction aborted by a queueing error.
  out.multi = await r.multi().incr('n:count').get('n:count').lpop('n:list').exec();
  try {
    await r.multi().set('n:x', '1').call('nosuchcommand').exec();
    out.multi_abort = 'no error';
  } catch (e) {
    out.multi_abort = e.message;
  }

  // Scripting: EVAL, EVALSHA through defineCommand, a script error.
  r.defineCommand('twice', { numberOfKeys: 1, lua: 'return tonumber(redis.call("get", KEYS[1])) * 2' });
  out.script = [await r.eval('return {KEYS[1], ARGV[1]}', 1, 'n:a', 'b'), await r.twice('n:count')];
  try {
    await r.eval('return redis.call("incr", KEYS[1])', 1, 'n:k');
  } catch (e) {
    out.script_error = e.message.replace(/script: \w+/, 'script: <sha>');
  }

  // MONITOR: what a second client sends, argument by argument.
  const mon = await new Redis(opts).monitor();
  const seen = [];
  const monitored = new Promise((resolve) => {
    mon.on('monitor', (time, args) => {
      seen.push(args);
      if (args[0] === 'echo' || args[0] === 'ECHO') resolve();
    });
  });
  const w = new Redis(opts);
  await w.connect();
  await w.set('n:m', 'x y');
  await w.pipeline().get('n:m').del('n:m').exec();
  await w.echo('done');
  await withTimeout(monitored, 5000, 'monitor');
  out.monitor = seen;
  mon.disconnect();

  // Pub/sub: messages to a channel and a pattern, then unsubscribe.
  const sub = new Redis(opts);
  await sub.connect();
  const messages = [];
  const got = new Promise((resolve) => {
    sub.on('message', (channel, message) => {
      messages.push(['message', channel, message]);
      if (messages.length === 2) resolve();
    });
    sub.on('pmessage', (pattern, channel, message) => {
      messages.push(['pmessage', pattern, channel, message]);
      if (messages.length === 2) resolve();
    });
  });
  out.subscribe = [await sub.subscribe('n:ch'), await sub.psubscribe('n:p*')];
  out.publish = [await r.publish('n:ch', 'hello'), await r.publish('n:px', 'hi')];
  await withTimeout(got, 5000, 'messages');
  messages.sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
  out.messages = messages;
  out.unsubscribe = [await sub.unsubscribe('n:ch'), await sub.punsubscribe('n:p*')];
  out.after = await sub.get('n:count');  // an ordinary command again

  for (const c of [r, w, sub]) c.disconnect();
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
  process.stderr.write(`client_check: ${e.stack || e}\n`);
  process.exit(1);
});
