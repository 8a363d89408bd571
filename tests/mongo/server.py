"""A MongoDB wire-protocol front over mongomock, for tandem's `state.mongodb` tests.

No MongoDB server can be installed on the machines tandem is tested on (it is in
neither Debian, PyPI nor npm), so the tests talk to this instead: a small asyncio
server that speaks MongoDB's wire protocol (OP_MSG, and the legacy OP_QUERY handshake)
and runs each command on mongomock collections, mongomock being a pure-Python
implementation of MongoDB's query engine (filters, updates, sorts, unique `_id`, TTL
indexes). It is not MongoDB: only the commands a driver needs for CRUD, indexes and
transactions are answered, and anything else is refused with MongoDB's
`CommandNotFound` error, so a test never passes against a command it did not run.

It answers `hello` as the primary of a one-member replica set (`rs0`), so drivers
allow sessions and transactions. A transaction runs alone: while one is open, commands
of other sessions wait; its writes apply at once and an abort (or an error the
driver answers with `abortTransaction`) restores what the collections held at its
start. Errors are MongoDB's replies: `ok: 0`, `errmsg`, `code` (and `writeErrors` with
code 11000 for a duplicate `_id`).

    python tests/mongo/server.py --port 27017
"""

import argparse
import asyncio
import copy
import datetime
import itertools
import struct
import sys

import bson
import mongomock
from bson.codec_options import CodecOptions
from bson.objectid import ObjectId

OP_REPLY = 1
OP_QUERY = 2004
OP_MSG = 2013

CHECKSUM_PRESENT = 1
MORE_TO_COME = 1 << 1

CODEC = CodecOptions(tz_aware=False)

# How long a transaction may hold the server before it is aborted, as MongoDB's
# transactionLifetimeLimitSeconds (60 s) does.
TRANSACTION_LIFETIME = 60.0


class CommandError(Exception):
    def __init__(self, code, name, message):
        super().__init__(message)
        self.code = code
        self.name = name
        self.message = message


class Server:
    def __init__(self, port, replica_set):
        self.port = port
        self.replica_set = replica_set
        self.client = mongomock.MongoClient()
        self.connection_ids = itertools.count(1)
        self.request_ids = itertools.count(1)
        # The open transaction: (session id, txnNumber), the snapshot to restore on
        # abort, and the timer that aborts it when it runs too long.
        self.transaction = None
        self.snapshot = None
        self.expiry = None
        self.idle = asyncio.Condition()

    # ----- the wire -----

    async def serve(self, reader, writer):
        connection_id = next(self.connection_ids)
        try:
            while True:
                header = await reader.readexactly(16)
                length, request_id, _response_to, opcode = struct.unpack("<iiii", header)
                body = await reader.readexactly(length - 16)
                if opcode == OP_MSG:
                    flags = struct.unpack_from("<I", body)[0]
                    command = parse_msg(body, flags)
                    reply = await self.run(command, connection_id)
                    if not flags & MORE_TO_COME:
                        writer.write(self.msg(request_id, reply))
                elif opcode == OP_QUERY:
                    command = parse_query(body)
                    reply = await self.run(command, connection_id)
                    writer.write(self.reply(request_id, reply))
                else:
                    writer.close()
                    return
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def msg(self, response_to, document):
        payload = struct.pack("<I", 0) + b"\x00" + bson.encode(document)
        header = struct.pack("<iiii", 16 + len(payload), next(self.request_ids), response_to, OP_MSG)
        return header + payload

    def reply(self, response_to, document):
        payload = struct.pack("<iqii", 0, 0, 0, 1) + bson.encode(document)
        header = struct.pack("<iiii", 16 + len(payload), next(self.request_ids), response_to, OP_REPLY)
        return header + payload

    # ----- sessions and transactions -----

    async def run(self, command, connection_id):
        name = next(iter(command), "")
        session = command.get("lsid", {}).get("id")
        txn = (session, command.get("txnNumber")) if session is not None else None
        in_transaction = command.get("autocommit") is False
        try:
            if in_transaction:
                await self.enter(txn, command.get("startTransaction", False), name)
            else:
                await self.wait_idle(txn)
            result = self.dispatch(name, command, connection_id, in_transaction)
            result.setdefault("ok", 1.0)
            return result
        except CommandError as error:
            return {"ok": 0.0, "errmsg": error.message, "code": error.code, "codeName": error.name}
        except Exception as error:  # A bug here is an answer, never a hung driver.
            return {"ok": 0.0, "errmsg": f"{type(error).__name__}: {error}", "code": 1, "codeName": "InternalError"}

    async def wait_idle(self, txn):
        async with self.idle:
            await self.idle.wait_for(lambda: self.transaction is None or self.transaction[0] == txn[0] if txn else self.transaction is None)

    async def enter(self, txn, start, name):
        if start:
            async with self.idle:
                await self.idle.wait_for(lambda: self.transaction is None)
                self.transaction = txn
                self.snapshot = self.take_snapshot()
                loop = asyncio.get_running_loop()
                self.expiry = loop.call_later(TRANSACTION_LIFETIME, self.expire, txn)
            return
        if self.transaction != txn and name not in ("commitTransaction", "abortTransaction"):
            raise CommandError(251, "NoSuchTransaction", "Transaction with this txnNumber is not in progress")

    def expire(self, txn):
        if self.transaction == txn:
            asyncio.ensure_future(self.finish(restore=True))

    async def finish(self, restore):
        async with self.idle:
            if restore and self.snapshot is not None:
                self.restore_snapshot(self.snapshot)
            if self.expiry is not None:
                self.expiry.cancel()
            self.transaction = self.snapshot = self.expiry = None
            self.idle.notify_all()

    def take_snapshot(self):
        store = self.client._store
        return {
            (db, col): copy.deepcopy(store[db][col]._documents)
            for db in store.list_created_database_names()
            for col in store[db].list_created_collection_names()
        }

    def restore_snapshot(self, snapshot):
        store = self.client._store
        for db in store.list_created_database_names():
            for col in store[db].list_created_collection_names():
                documents = snapshot.get((db, col))
                store[db][col]._documents = documents if documents is not None else type(store[db][col]._documents)()

    # ----- commands -----

    def dispatch(self, name, command, connection_id, in_transaction):
        lowered = name.lower()
        if lowered in ("hello", "ismaster"):
            return self.hello(connection_id)
        if lowered in ("ping", "endsessions", "killcursors", "getlasterror"):
            return {}
        if lowered == "buildinfo":
            return {"version": "7.0.0", "versionArray": [7, 0, 0, 0], "maxBsonObjectSize": 16 * 1024 * 1024}
        if lowered == "committransaction":
            if self.transaction is not None and self.transaction[0] == command.get("lsid", {}).get("id"):
                asyncio.ensure_future(self.finish(restore=False))
            return {}
        if lowered == "aborttransaction":
            if self.transaction is not None and self.transaction[0] == command.get("lsid", {}).get("id"):
                asyncio.ensure_future(self.finish(restore=True))
            return {}
        handler = COMMANDS.get(name)
        if handler is None:
            raise CommandError(59, "CommandNotFound", f"no such command: '{name}'")
        collection = self.client[command["$db"]][command[name]] if isinstance(command[name], str) else None
        return handler(self, collection, command)

    def hello(self, connection_id):
        me = f"127.0.0.1:{self.port}"
        reply = {
            "helloOk": True,
            "isWritablePrimary": True,
            "ismaster": True,
            "secondary": False,
            "maxBsonObjectSize": 16 * 1024 * 1024,
            "maxMessageSizeBytes": 48_000_000,
            "maxWriteBatchSize": 100_000,
            "localTime": datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None),
            "logicalSessionTimeoutMinutes": 30,
            "connectionId": connection_id,
            "minWireVersion": 0,
            "maxWireVersion": 21,
            "readOnly": False,
        }
        if self.replica_set:
            reply.update(
                setName=self.replica_set,
                setVersion=1,
                electionId=ObjectId("7fffffff0000000000000001"),
                hosts=[me],
                primary=me,
                me=me,
            )
        return reply


def cursor(collection, documents):
    # Every answer fits one batch here: the tests' collections are small.
    return {"cursor": {"id": bson.int64.Int64(0), "ns": collection.full_name, "firstBatch": documents}}


def find(server, collection, command):
    sort = list((command.get("sort") or {}).items())
    found = collection.find(command.get("filter") or {}, command.get("projection") or None)
    if sort:
        found = found.sort(sort)
    if command.get("skip"):
        found = found.skip(int(command["skip"]))
    limit = abs(int(command.get("limit") or 0))
    if limit:
        found = found.limit(limit)
    return cursor(collection, list(found))


def get_more(server, collection, command):
    return {"cursor": {"id": bson.int64.Int64(0), "ns": f"{command['$db']}.{command['collection']}", "nextBatch": []}}


def write_error(index, error):
    details = getattr(error, "details", None) or {}
    return {"index": index, "code": details.get("code", getattr(error, "code", None) or 2), "errmsg": str(error)}


def insert(server, collection, command):
    n, errors = 0, []
    for index, document in enumerate(command.get("documents", [])):
        try:
            collection.insert_one(document)
            n += 1
        except mongomock.DuplicateKeyError as error:
            errors.append({"index": index, "code": 11000, "errmsg": f"E11000 duplicate key error collection: {collection.full_name} index: _id_ dup key: {str(error)}"})
            if command.get("ordered", True):
                break
    return written(n, errors)


def written(n, errors, **extra):
    reply = {"n": n, **extra}
    if errors:
        reply["writeErrors"] = errors
    return reply


def update(server, collection, command):
    n = modified = 0
    upserted, errors = [], []
    for index, spec in enumerate(command.get("updates", [])):
        query, change = spec.get("q", {}), spec.get("u", {})
        upsert, multi = spec.get("upsert", False), spec.get("multi", False)
        try:
            if isinstance(change, list):
                raise CommandError(9, "FailedToParse", "update pipelines are not served by this test server")
            if change and all(name.startswith("$") for name in change):
                result = (collection.update_many if multi else collection.update_one)(query, change, upsert=upsert)
            else:
                result = collection.replace_one(query, change, upsert=upsert)
            n += result.matched_count
            modified += result.modified_count
            if result.upserted_id is not None:
                n += 1
                upserted.append({"index": index, "_id": result.upserted_id})
        except mongomock.DuplicateKeyError as error:
            errors.append({"index": index, "code": 11000, "errmsg": f"E11000 duplicate key error collection: {collection.full_name} index: _id_ dup key: {str(error)}"})
            if command.get("ordered", True):
                break
        except mongomock.WriteError as error:
            errors.append(write_error(index, error))
            if command.get("ordered", True):
                break
    extra = {"nModified": modified}
    if upserted:
        extra["upserted"] = upserted
    return written(n, errors, **extra)


def delete(server, collection, command):
    n, errors = 0, []
    for index, spec in enumerate(command.get("deletes", [])):
        query = spec.get("q", {})
        result = (collection.delete_one if spec.get("limit", 0) == 1 else collection.delete_many)(query)
        n += result.deleted_count
    return written(n, errors)


def count(server, collection, command):
    return {"n": collection.count_documents(command.get("query") or {})}


def create_indexes(server, collection, command):
    before = len(collection.index_information()) if collection.name in collection.database.list_collection_names() else 1
    for index in command.get("indexes", []):
        options = {name: value for name, value in index.items() if name in ("name", "unique", "expireAfterSeconds", "sparse")}
        collection.create_index(list(index["key"].items()), **options)
    after = len(collection.index_information())
    return {"numIndexesBefore": before, "numIndexesAfter": after, "createdCollectionAutomatically": before <= 1}


def list_indexes(server, collection, command):
    indexes = []
    for name, info in collection.index_information().items():
        index = {"v": 2, "key": dict(info["key"]), "name": name}
        for option in ("unique", "expireAfterSeconds", "sparse"):
            if option in info:
                index[option] = info[option]
        indexes.append(index)
    return cursor(collection, indexes)


def drop(server, collection, command):
    collection.drop()
    return {}


COMMANDS = {
    "find": find,
    "getMore": get_more,
    "insert": insert,
    "update": update,
    "delete": delete,
    "count": count,
    "createIndexes": create_indexes,
    "listIndexes": list_indexes,
    "drop": drop,
}


def parse_msg(body, flags):
    end = len(body) - (4 if flags & CHECKSUM_PRESENT else 0)
    offset = 4
    command = None
    sequences = {}
    while offset < end:
        kind = body[offset]
        offset += 1
        if kind == 0:
            size = struct.unpack_from("<i", body, offset)[0]
            command = bson.decode(body[offset:offset + size], CODEC)
            offset += size
        elif kind == 1:
            size = struct.unpack_from("<i", body, offset)[0]
            section_end = offset + size
            offset += 4
            name_end = body.index(b"\x00", offset)
            identifier = body[offset:name_end].decode()
            offset = name_end + 1
            documents = []
            while offset < section_end:
                doc_size = struct.unpack_from("<i", body, offset)[0]
                documents.append(bson.decode(body[offset:offset + doc_size], CODEC))
                offset += doc_size
            sequences[identifier] = documents
        else:
            raise ValueError(f"unknown OP_MSG section kind {kind}")
    command.update(sequences)
    return command


def parse_query(body):
    offset = 4
    name_end = body.index(b"\x00", offset)
    namespace = body[offset:name_end].decode()
    offset = name_end + 1 + 8
    size = struct.unpack_from("<i", body, offset)[0]
    query = bson.decode(body[offset:offset + size], CODEC)
    if "$query" in query:
        query = query["$query"]
    query.setdefault("$db", namespace.split(".", 1)[0])
    return query


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--replica-set", default="rs0", help="the setName hello reports; '' for a standalone server")
    args = parser.parse_args()
    server = Server(args.port, args.replica_set)
    listener = await asyncio.start_server(server.serve, "127.0.0.1", args.port)
    print(f"mongo test server on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
    async with listener:
        await listener.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
