// Node 20 lacks Promise.withResolvers (Node >= 22), which it-queue (via mortice, via
// @libp2p/peer-store) calls.  peer.mjs imports this module first, so the standard
// definition below is in place before any libp2p module runs.
if (typeof Promise.withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers () {
      let resolve, reject
      const promise = new this((res, rej) => { resolve = res; reject = rej })
      return { promise, resolve, reject }
    }
  })
}
