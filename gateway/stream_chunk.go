package gateway

// HTTP chunk framing of the relay's events, and the queue of whole
// chunks that coalesces a burst into one write.

var (
	deltaPrefix = []byte("event: delta\ndata: {\"type\":\"delta\",\"content\":")
	donePrefix  = []byte("event: done\ndata: {\"type\":\"done\"")
	errorPrefix = []byte("event: error\ndata: {\"type\":\"error\",\"error\":{\"code\":")
	pingChunk   = []byte("8\r\n: ping\n\n\r\n")
	lastChunk   = []byte("0\r\n\r\n")
)

// chunkRoom is what beginChunk reserves for the chunk-size line: up to 8
// hex digits and CRLF.
const chunkRoom = 10

// beginChunk starts an HTTP chunk in buf, leaving room for its size line.
func beginChunk(buf []byte) []byte {
	return append(buf[:0], "0000000000"[:chunkRoom]...)
}

// endChunk writes the size line of the chunk begun at buf[0] and appends
// its CRLF; it returns the bytes to send (the size line is right-aligned
// in the reserved room, so the slice starts where it begins).
func endChunk(buf []byte) []byte {
	n := len(buf) - chunkRoom
	var size [8]byte
	i := len(size)
	for {
		i--
		size[i] = hexDigits[n&0xf]
		n >>= 4
		if n == 0 {
			break
		}
	}
	start := chunkRoom - 2 - (len(size) - i)
	copy(buf[start:], size[i:])
	buf[chunkRoom-2], buf[chunkRoom-1] = '\r', '\n'
	buf = append(buf, '\r', '\n')
	return buf[start:]
}

// emit queues whole chunks and writes the queue unless the relay is
// coalescing, the queue is small and the stream goes on (last is false).
func (r *relay) emit(chunks []byte, last bool) error {
	r.out = append(r.out, chunks...)
	if r.coalesce && !last && len(r.out) < maxCoalesced {
		return nil
	}
	return r.flush()
}

// flush writes the queued chunks, if any.
func (r *relay) flush() error {
	if len(r.out) == 0 {
		return nil
	}
	err := r.write(r.out)
	r.out = r.out[:0]
	return err
}
