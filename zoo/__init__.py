"""Zoo cards (JSON) and weights, installed as package data of `tfrecog._zoo`."""
