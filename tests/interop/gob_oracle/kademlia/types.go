// Package kademlia declares the Lumera P2P message types as the wire protocol spec lists them
// (field names, types and order), so that Go's encoding/gob names and lays them out exactly
// as a supernode does. Written for lumera-p2p's interoperability tests.
package kademlia

import "encoding/gob"

type ResultType int

type Node struct {
	ID       []byte
	IP       string
	Port     uint16
	Version  string
	HashedID []byte
}

type Message struct {
	Sender        *Node
	Receiver      *Node
	MessageType   int
	Data          interface{}
	CorrelationID string
	Origin        string
}

type ResponseStatus struct {
	Result ResultType
	ErrMsg string
}

type FindNodeRequest struct{ Target []byte }

type FindNodeResponse struct {
	Status  ResponseStatus
	Closest []*Node
}

type FindValueRequest struct{ Target []byte }

type FindValueResponse struct {
	Status  ResponseStatus
	Closest []*Node
	Value   []byte
}

type StoreDataRequest struct {
	Data []byte
	Type int
}

type StoreDataResponse struct{ Status ResponseStatus }

type ReplicateDataRequest struct{ Keys []string }

type ReplicateDataResponse struct{ Status ResponseStatus }

type BatchFindValuesRequest struct{ Keys []string }

type BatchFindValuesResponse struct {
	Status   ResponseStatus
	Response []byte
	Done     bool
}

type BatchStoreDataRequest struct {
	Data [][]byte
	Type int
}

type BatchFindNodeRequest struct{ HashedTarget [][]byte }

type BatchFindNodeResponse struct {
	Status       ResponseStatus
	ClosestNodes map[string][]*Node
}

type KeyValWithClosest struct {
	Value   []byte
	Closest []*Node
}

type BatchGetValuesRequest struct{ Data map[string]KeyValWithClosest }

type BatchGetValuesResponse struct {
	Data   map[string]KeyValWithClosest
	Status ResponseStatus
}

// Register in the order the supernode's message.go does.
func init() {
	gob.Register(&ResponseStatus{})
	gob.Register(&FindNodeRequest{})
	gob.Register(&FindNodeResponse{})
	gob.Register(&FindValueRequest{})
	gob.Register(&FindValueResponse{})
	gob.Register(&StoreDataRequest{})
	gob.Register(&StoreDataResponse{})
	gob.Register(&ReplicateDataRequest{})
	gob.Register(&ReplicateDataResponse{})
	gob.Register(&BatchFindValuesRequest{})
	gob.Register(&BatchFindValuesResponse{})
	gob.Register(&BatchStoreDataRequest{})
	gob.Register(&BatchFindNodeRequest{})
	gob.Register(&BatchFindNodeResponse{})
	gob.Register(&BatchGetValuesRequest{})
	gob.Register(&BatchGetValuesResponse{})
}
