// A js-libp2p peer driven over stdin/stdout JSON lines by tests/interop/test_js_libp2p.py.
//
// Stack: TCP + Noise + yamux, identify, ping, GossipSub (StrictSign).  It listens on
// 127.0.0.1 (port 0 unless LISTEN or argv[2] names another multiaddr) and prints
//   {"event":"ready","peer_id":...,"addrs":[...]}
// then reads one command per stdin line, each answered by one line carrying the same "id":
//   {"id":1,"cmd":"dial","addr":"/ip4/.../p2p/..."}      -> {"id":1,"ok":true,"peer":...}
//   {"id":2,"cmd":"ping","peer":"12D3KooW..."}            -> {"id":2,"ok":true,"rtt_ms":...}
//   {"id":3,"cmd":"identify","peer":"12D3KooW..."}        -> {"id":3,"ok":true,"protocols":[...],"agent_version":...,"protocol_version":...}
//   {"id":4,"cmd":"subscribe","topic":"t"}                -> {"id":4,"ok":true}
//   {"id":5,"cmd":"publish","topic":"t","data":"<b64>"}   -> {"id":5,"ok":true,"recipients":n}
//   {"id":6,"cmd":"connection","peer":"12D3KooW..."}      -> {"id":6,"ok":true,"direction":...,"encryption":...,"multiplexer":...,"streams":[{"protocol":...,"direction":...}]}
//   {"id":7,"cmd":"idontwants","peer":"12D3KooW..."}      -> {"id":7,"ok":true,"ids":["<b64 message id, unpadded>",...]}
//   {"id":8,"cmd":"peers"}                                -> {"id":8,"ok":true,"peers":[...]}
//   {"id":9,"cmd":"mesh","topic":"t"}                     -> {"id":9,"ok":true,"mesh":[...],"subscribers":[...]}
//   {"id":10,"cmd":"stop"}                                -> {"id":10,"ok":true}, then exit 0
// A failed command answers {"id":...,"ok":false,"error":"..."}.  Unprompted events:
//   {"event":"message","topic":...,"from":...,"data":"<b64>","seqno":"<decimal>","wire_id":"<b64, unpadded>"}
//   {"event":"connect","peer":...}, {"event":"disconnect","peer":...}
// End of stdin stops the peer.  Diagnostics go to stderr only.

import './node20.mjs' // first: Promise.withResolvers for Node 20
import { createInterface } from 'node:readline'
import { gossipsub } from '@chainsafe/libp2p-gossipsub'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'

const listen = process.argv[2] ?? process.env.LISTEN ?? '/ip4/127.0.0.1/tcp/0'

function emit (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

const node = await createLibp2p({
  addresses: { listen: [listen] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    ping: ping(),
    pubsub: gossipsub({
      globalSignaturePolicy: 'StrictSign', // the default, spelled out: py-libp2p runs strict signing
      allowPublishToZeroTopicPeers: true, // "publish" answers recipients: 0 instead of failing
      emitSelf: false
    })
  }
})

node.addEventListener('peer:connect', (evt) => emit({ event: 'connect', peer: evt.detail.toString() }))
node.addEventListener('peer:disconnect', (evt) => emit({ event: 'disconnect', peer: evt.detail.toString() }))
node.services.pubsub.addEventListener('message', (evt) => {
  const msg = evt.detail
  emit({
    event: 'message',
    topic: msg.topic,
    from: msg.type === 'signed' ? msg.from.toString() : null,
    data: Buffer.from(msg.data).toString('base64'),
    seqno: msg.type === 'signed' ? msg.sequenceNumber.toString() : null,
    // the id go-libp2p and py-libp2p give it (peer id bytes + seqno); js-libp2p's own id
    // is the public key's protobuf + seqno, so IDONTWANTs from those peers name this one
    wire_id: msg.type === 'signed' ? peerSeqnoId(msg.from, msg.sequenceNumber) : null
  })
})

function peerSeqnoId (from, seqno) {
  const seq = Buffer.alloc(8)
  seq.writeBigUInt64BE(seqno)
  return Buffer.concat([from.toMultihash().bytes, seq]).toString('base64').replace(/=+$/, '') // unpadded, as gossipsub keys ids
}

function connectionTo (peer) {
  const conn = node.getConnections().find((c) => c.remotePeer.toString() === peer && c.status === 'open')
  if (conn === undefined) throw new Error(`not connected to ${peer}`)
  return conn
}

const commands = {
  async dial ({ addr }) {
    const conn = await node.dial(multiaddr(addr), { signal: AbortSignal.timeout(10000) })
    return { peer: conn.remotePeer.toString() }
  },
  async ping ({ peer }) {
    const rtt = await node.services.ping.ping(connectionTo(peer).remotePeer, { signal: AbortSignal.timeout(10000) })
    return { rtt_ms: rtt }
  },
  async identify ({ peer }) {
    const res = await node.services.identify.identify(connectionTo(peer), { signal: AbortSignal.timeout(10000) })
    return {
      peer: res.peerId.toString(),
      protocols: res.protocols,
      agent_version: res.agentVersion ?? null,
      protocol_version: res.protocolVersion ?? null,
      listen_addrs: res.listenAddrs.map((a) => a.toString())
    }
  },
  async subscribe ({ topic }) {
    node.services.pubsub.subscribe(topic)
    return {}
  },
  async publish ({ topic, data }) {
    const res = await node.services.pubsub.publish(topic, Buffer.from(data, 'base64'))
    return { recipients: res.recipients.length }
  },
  async connection ({ peer }) {
    const conn = connectionTo(peer)
    return {
      direction: conn.direction,
      encryption: conn.encryption ?? null,
      multiplexer: conn.multiplexer ?? null,
      streams: conn.streams.map((s) => ({ protocol: s.protocol ?? null, direction: s.direction }))
    }
  },
  async idontwants ({ peer }) {
    // message ids (base64) of the IDONTWANTs received from peer in the last few
    // heartbeats; gossipsub keeps them in a private map, read here for diagnosis only
    const ids = node.services.pubsub.idontwants?.get(peer)
    return { ids: ids === undefined ? [] : [...ids.keys()] }
  },
  async peers () {
    return { peers: node.getPeers().map((p) => p.toString()) }
  },
  async mesh ({ topic }) {
    return {
      mesh: node.services.pubsub.getMeshPeers(topic),
      subscribers: node.services.pubsub.getSubscribers(topic).map((p) => p.toString())
    }
  },
  async stop () {
    return {}
  }
}

let stopping = null
async function stop (code) {
  stopping ??= (async () => {
    try {
      await node.stop()
    } catch (err) {
      process.stderr.write(`peer: stop failed: ${err?.stack ?? err}\n`)
    }
    process.exit(code)
  })()
  return stopping
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
let queue = Promise.resolve() // commands run one at a time, in order
lines.on('line', (line) => { queue = queue.then(() => handle(line)) })
async function handle (line) {
  if (line.trim() === '') return
  let req
  try {
    req = JSON.parse(line)
  } catch (err) {
    emit({ id: null, ok: false, error: `bad JSON: ${err.message}` })
    return
  }
  const fn = commands[req.cmd]
  if (fn === undefined) {
    emit({ id: req.id ?? null, ok: false, error: `unknown command ${JSON.stringify(req.cmd)}` })
    return
  }
  try {
    emit({ id: req.id ?? null, ok: true, ...(await fn(req)) })
  } catch (err) {
    emit({ id: req.id ?? null, ok: false, error: String(err?.message ?? err) })
  }
  if (req.cmd === 'stop') await stop(0)
}
lines.on('close', () => { queue.then(() => stop(0)) })
process.on('SIGTERM', () => { stop(0) })

emit({ event: 'ready', peer_id: node.peerId.toString(), addrs: node.getMultiaddrs().map((a) => a.toString()) })
