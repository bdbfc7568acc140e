// goboracle reads Lumera P2P frames (one hex string per line) from stdin, decodes each with
// Go's encoding/gob into a *kademlia.Message, encodes it again in a fresh encoder, and prints
// the new frame in hex, or "ERR <message>" when Go refuses the input.
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"encoding/hex"
	"fmt"
	"os"

	"lumerap2p.test/goboracle/kademlia"
)

func roundTrip(frame []byte) ([]byte, error) {
	if len(frame) < 8 {
		return nil, fmt.Errorf("short frame")
	}
	length, n := binary.Uvarint(frame[:8])
	if n <= 0 || uint64(len(frame)-8) != length {
		return nil, fmt.Errorf("bad header")
	}
	var msg kademlia.Message
	if err := gob.NewDecoder(bytes.NewReader(frame[8:])).Decode(&msg); err != nil {
		return nil, err
	}
	var body bytes.Buffer
	if err := gob.NewEncoder(&body).Encode(&msg); err != nil {
		return nil, err
	}
	header := make([]byte, 8)
	binary.PutUvarint(header, uint64(body.Len()))
	return append(header, body.Bytes()...), nil
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for in.Scan() {
		frame, err := hex.DecodeString(in.Text())
		if err == nil {
			frame, err = roundTrip(frame)
		}
		if err != nil {
			fmt.Fprintf(out, "ERR %v\n", err)
			continue
		}
		fmt.Fprintln(out, hex.EncodeToString(frame))
	}
}
