"""Tortoise's SQLite backend, with its lock released when a connection cannot be opened.

Tortoise 1.1's SQLite client takes its single-connection lock and then opens the file; if opening
fails (disk gone, permissions, a moved file) the lock is never released and every later query
waits forever. hookline must answer 503 while storage is down and recover when it returns, so the
two context managers below release the lock on a failed entry. Selected in
`core.storage.database.tortoise_config` as the engine `core.storage.sqlite_backend`.
"""

from __future__ import annotations

from typing import Any

from tortoise.backends.base.client import ConnectionWrapper, TransactionalDBClient
from tortoise.backends.sqlite.client import SqliteClient, SqliteTransactionContext, SqliteTransactionWrapper
from tortoise.connection import get_connections


class _ConnectionWrapper(ConnectionWrapper):
    async def __aenter__(self) -> Any:
        await self._lock.acquire()
        try:
            await self.ensure_connection()
        except BaseException:
            self._lock.release()
            raise
        return self.connection


class _TransactionContext(SqliteTransactionContext):
    async def __aenter__(self) -> TransactionalDBClient:
        await self._trxlock.acquire()
        token = None
        try:
            await self.ensure_connection()
            token = get_connections().set(self.connection_name, self.connection)
            await self.connection.begin()
        except BaseException:
            if token is not None:
                get_connections().reset(token)
            self._trxlock.release()
            raise
        self.token = token
        return self.connection


class RecoveringSqliteClient(SqliteClient):
    def acquire_connection(self) -> ConnectionWrapper:
        return _ConnectionWrapper(self._lock, self)

    def _in_transaction(self) -> _TransactionContext:
        return _TransactionContext(SqliteTransactionWrapper(self), self._lock)


client_class = RecoveringSqliteClient
