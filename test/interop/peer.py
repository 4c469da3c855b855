#!/usr/bin/python3
"""A Python Postage 1.2.1 peer for the interop suite, on Debian's python3-pika.

Written for this project (not a copy of Postage): it speaks exactly what Python Postage
1.2.1 put on the wire, so that the TypeScript port can be held to it.

  peer.py app --name N [--host H] [--group G]...   a GenericApplication (responder)
  peer.py client [--name NAME]                      a GenericProducer driven from stdin

Broker: POSTAGE_VHOST, POSTAGE_USER, POSTAGE_PASSWORD (read by Postage 1.2.1 itself), plus
POSTAGE_HOST and POSTAGE_PORT (Postage 1.2.1 always used 'localhost' and the default port).

What 1.2.1 did on the wire, and this peer does too:
- bodies are `json.dumps(body)`: ASCII only (`\\u` escapes), NaN / Infinity written bare;
- commands are published with one property, content_type: no message_id, no
  correlation_id, no delivery_mode;
- an RPC call declares a fresh exclusive auto-delete reply queue per try, publishes with
  content_type and reply_to only, consumes that queue until the timeout, and tries
  1 + max_retry (4) times; the `_max_retry` argument is ignored, as 1.2.1 ignored it
  (`if _counter < self.max_retry`); every try timing out returns
  MessageResultException('TimeoutError', '');
- a reply is published on the default exchange to reply_to with NO properties at all and
  an empty fingerprint;
- an application declares N and N@H and its unique queue P@H with auto_delete=True (not
  durable), the group queue N#G with no flags, binds N/rr, N, @H, N@H/rr, N@H, P@H
  (+ N#G, N#G/rr per group), sets prefetch 1 and consumes every (queue, key) pair once
  (so P@H has several consumers);
- an RPC nobody handles is acked and never answered; an RPC handler that raises answers
  MessageResultException(class name, str(exc)) and the request is rejected (no requeue);
- `quit` acks and ends the whole process (exit 0); `restart` acks and re-execs the same
  command line (same PID): os.execl(sys.executable, sys.executable, *sys.argv);
- join_group binds N#G to the unique queue; leave_group unbinds it.

Test protocol (not Postage): JSON lines. The app writes events on stdout; the client reads
commands on stdin and writes one result line per command. Values that JSON cannot carry
are marked: {"$float": "NaN" | "Infinity" | "-Infinity"}, {"$int": "<digits>"} for
integers beyond 2**53 (both ways).
"""

import argparse
import getpass
import json
import os
import socket
import sys
import threading
import time
import traceback

import pika

EXCHANGE = {
    'exchange': 'generic-application-exchange',
    'exchange_type': 'direct',
    'passive': False,
    'durable': True,
    'auto_delete': False,
}

GENERATION_ENV = 'PEER_GENERATION'
OUT_LOCK = threading.Lock()


# ---------------------------------------------------------------- test protocol helpers

def mark(value):
    """A decoded body made safe for strict JSON (the TypeScript side unmarks it)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        if value != value:
            return {'$float': 'NaN'}
        if value in (float('inf'), float('-inf')):
            return {'$float': 'Infinity' if value > 0 else '-Infinity'}
        return value
    if isinstance(value, int):
        return {'$int': str(value)} if abs(value) > 2 ** 53 else value
    if isinstance(value, dict):
        return {k: mark(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mark(v) for v in value]
    return value


def unmark(value):
    if isinstance(value, dict):
        if set(value) == {'$float'}:
            return float(value['$float'])
        if set(value) == {'$int'}:
            return int(value['$int'])
        return {k: unmark(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unmark(v) for v in value]
    return value


def emit(**event):
    line = json.dumps(mark(event), allow_nan=False)
    with OUT_LOCK:
        sys.stdout.write(line + '\n')
        sys.stdout.flush()


def props_of(properties):
    """The AMQP properties a delivery carried (None ones left out)."""
    out = {}
    for key in ('content_type', 'content_encoding', 'delivery_mode', 'priority',
                'correlation_id', 'reply_to', 'expiration', 'message_id',
                'timestamp', 'type', 'user_id', 'app_id', 'headers'):
        value = getattr(properties, key, None)
        if value is not None:
            out[key] = value if not isinstance(value, bytes) else value.decode('latin-1')
    return out


# ---------------------------------------------------------------- Postage 1.2.1 wire

def fingerprint(name, type_, host=None):
    # Fingerprint(name, type, pid=os.getpid(), host=socket.gethostname(),
    #             user=getpass.getuser(), vhost=global_vhost).as_dict()
    return {
        'name': str(name), 'type': str(type_), 'pid': str(os.getpid()),
        'host': str(host or socket.gethostname()), 'user': str(getpass.getuser()),
        'vhost': str(os.environ.get('POSTAGE_VHOST', '/')),
    }


def message_body(type_='none', name='none', category='message'):
    return {'type': type_, 'name': name, 'category': category, 'version': '2',
            'fingerprint': {}, 'content': {}, '_reserved': {}}


def command_body(name, parameters, category='message'):
    body = message_body('command', str(name), category)
    body['content']['parameters'] = parameters
    return body


def result_body(value, message='', result_type='success'):
    body = message_body('result')
    body['content']['type'] = result_type
    body['content']['value'] = value
    body['content']['message'] = message
    return body


def result_error(message):
    return result_body(None, message, 'error')


def result_exception(name, message):
    return result_body(name, message, 'exception')


def encode(body):
    # JsonEncoder.encode: json.dumps(data): ensure_ascii=True, allow_nan=True.
    return json.dumps(body)


def decode(data):
    return json.loads(data)


def connect():
    credentials = pika.PlainCredentials(os.environ.get('POSTAGE_USER', 'guest'),
                                        os.environ.get('POSTAGE_PASSWORD', 'guest'))
    params = pika.ConnectionParameters(
        host=os.environ.get('POSTAGE_HOST', 'localhost'),
        port=int(os.environ.get('POSTAGE_PORT', '5672')),
        virtual_host=os.environ.get('POSTAGE_VHOST', '/'),
        credentials=credentials)
    return pika.BlockingConnection(params)


def reply_from(reply):
    """consume_rpc's reading of a reply body (a malformed one becomes an error)."""
    try:
        kind = reply['content']['type']
        if kind == 'success':
            return result_body(reply['content']['value'], reply['content']['message'])
        if kind == 'error':
            return result_error(reply['content']['message'])
        if kind == 'exception':
            return result_exception(reply['content']['value'], reply['content']['message'])
        raise ValueError
    except (KeyError, ValueError, TypeError):
        return result_error('Malformed reply {0}'.format(reply.get('content') if isinstance(reply, dict) else reply))


class Producer(object):
    """GenericProducer with eks = [(GenericApplicationExchange, key)], one connection each."""

    rpc_timeout = 30
    max_retry = 4

    def __init__(self, fp):
        self.fingerprint = fp
        self.connection = connect()
        self.channel = self.connection.channel()
        self.channel.exchange_declare(**EXCHANGE)

    def close(self):
        try:
            self.connection.close()
        except Exception:
            pass

    def message(self, key, name, parameters):
        # _message_send: MessageCommand, fingerprint, one basic_publish per (exchange, key).
        body = command_body(name, parameters)
        body['fingerprint'].update(self.fingerprint)
        props = pika.BasicProperties(content_type='application/json')
        self.channel.basic_publish(exchange=EXCHANGE['exchange'], routing_key=key,
                                   body=encode(body), properties=props)

    def rpc(self, key, name, parameters, timeout=None, max_retry=None):
        """_rpc_send: returns (result body, raw reply text or None, tries, reply queues)."""
        if timeout is None:
            timeout = self.rpc_timeout
        retries = self.max_retry if max_retry is None else max_retry
        body = command_body(name, parameters, 'rpc')
        body['fingerprint'].update(self.fingerprint)
        encoded = encode(body)
        queues = []
        tries = 0
        while True:
            tries += 1
            # _build_rpc_properties: a fresh exclusive queue for every try.
            queue = self.channel.queue_declare(queue='', exclusive=True, auto_delete=True).method.queue
            queues.append(queue)
            props = pika.BasicProperties(content_type='application/json', reply_to=queue)
            self.channel.basic_publish(exchange=EXCHANGE['exchange'], routing_key=key,
                                       body=encoded, properties=props)
            got = self.consume_rpc(queue, timeout)
            if got is not None:
                raw, reply_props = got
                return reply_from(decode(raw)), raw, tries, queues, reply_props
            if tries > retries:
                # MessageResultException(exc.__class__.__name__, exc.__str__())
                return result_exception('TimeoutError', ''), None, tries, queues, None

    def consume_rpc(self, queue, timeout):
        """One reply from `queue` within `timeout` s, or None. Not acked, as in 1.2.1."""
        got = []

        def on_reply(channel, method, properties, body):
            if not got:
                got.append((body.decode('utf-8'), props_of(properties)))

        tag = self.channel.basic_consume(queue=queue, on_message_callback=on_reply)
        deadline = time.monotonic() + timeout
        while not got:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.connection.process_data_events(time_limit=min(left, 0.05))
        # stop_consuming(): the consumer is cancelled, so the auto-delete queue goes and a
        # late reply to this try is dropped by the broker.
        self.channel.basic_cancel(tag)
        return got[0] if got else None


# ---------------------------------------------------------------- the application

class RestartRequested(Exception):
    pass


class QuitRequested(Exception):
    pass


class Application(object):
    """GenericApplication(fingerprint, vhost, groups) with a few demo handlers."""

    def __init__(self, name, host, groups):
        self.fingerprint = fingerprint(name, 'application', host)
        self.name = name
        self.host = self.fingerprint['host']
        self.pid = self.fingerprint['pid']
        self.groups = list(groups)
        self.sid = {'name': name, 'flags': {'auto_delete': True}}
        self.hid = {'name': '{0}@{1}'.format(name, self.host), 'flags': {'auto_delete': True}}
        self.uid = {'name': '{0}@{1}'.format(self.pid, self.host), 'flags': {'auto_delete': True}}
        self.connection = connect()
        self.channel = self.connection.channel()
        self.qk_list = []
        for queue, key in [
                (self.sid, '{0}/rr'.format(name)),
                (self.uid, name),
                (self.uid, '@{0}'.format(self.host)),
                (self.hid, '{0}@{1}/rr'.format(name, self.host)),
                (self.uid, '{0}@{1}'.format(name, self.host)),
                (self.uid, '{0}@{1}'.format(self.pid, self.host))]:
            self.queue_bind(queue['name'], key, **queue['flags'])
        self.channel.basic_qos(prefetch_count=1)
        for group in self.groups:
            self.queue_bind(self.uid['name'], '{0}#{1}'.format(name, group), **self.uid['flags'])
            self.queue_bind('{0}#{1}'.format(name, group), '{0}#{1}/rr'.format(name, group))

    def queue_bind(self, queue, key, **flags):
        # GenericConsumer.queue_bind: declare the exchange and the queue every time, then bind.
        self.channel.exchange_declare(**EXCHANGE)
        self.channel.queue_declare(queue=queue, **flags)
        self.channel.queue_bind(queue=queue, exchange=EXCHANGE['exchange'], routing_key=key)
        self.qk_list.append((queue, key))

    def queue_unbind(self, queue, key):
        self.channel.exchange_declare(**EXCHANGE)
        self.channel.queue_unbind(queue=queue, exchange=EXCHANGE['exchange'], routing_key=key)

    def run(self):
        for queue, key in self.qk_list:
            self.channel.basic_consume(queue=queue, on_message_callback=self.on_message)
        emit(event='ready', name=self.name, pid=int(self.pid), host=self.host,
             generation=int(os.environ.get(GENERATION_ENV, '1')),
             queues=sorted(set(q for q, _ in self.qk_list)), fingerprint=self.fingerprint)
        try:
            self.channel.start_consuming()
        except QuitRequested:
            emit(event='quit')
            # MicroScheduler ends on ExitScheduler: the script, and the process, end.
            sys.exit(0)
        except RestartRequested:
            generation = int(os.environ.get(GENERATION_ENV, '1')) + 1
            emit(event='restart', generation=generation)
            os.environ[GENERATION_ENV] = str(generation)
            # MessageProcessor.restart(): the same command line, same PID, new image.
            os.execl(sys.executable, sys.executable, *sys.argv)

    def reply(self, properties, result):
        # GenericConsumer.rpc_reply: no properties at all, no fingerprint in the body.
        if not isinstance(result, dict) or 'content' not in result:
            result = result_body(result)
        self.channel.basic_publish(exchange='', routing_key=properties.reply_to, body=encode(result))

    def on_message(self, channel, method, properties, body):
        """MessageProcessor._msg_consumer."""
        raw = body.decode('utf-8')
        decoded = decode(raw)
        emit(event='delivery', routing_key=method.routing_key, properties=props_of(properties),
             body=decoded, raw=raw, redelivered=method.redelivered)
        try:
            category = decoded['category']
            type_ = decoded['type']
            name = decoded['name']
            if category == 'message' and type_ == 'command':
                handler = getattr(self, 'msg_' + name, None)
                if handler is not None:
                    handler(decoded['content'], method)
            elif category == 'rpc':
                reply_func = lambda result: self.reply(properties, result)
                try:
                    handler = getattr(self, 'rpc_' + name, None) if type_ == 'command' else None
                    if handler is not None:
                        handler(dict(decoded['content']), reply_func)
                except Exception as exc:
                    reply_func(result_exception(exc.__class__.__name__, str(exc)))
                    raise
            self.channel.basic_ack(delivery_tag=method.delivery_tag)
        except (QuitRequested, RestartRequested):
            # The handler already stopped consuming (cancel first, then the ack, as in 1.2.1).
            self.channel.basic_ack(delivery_tag=method.delivery_tag)
            raise
        except Exception as exc:
            emit(event='unmanaged-exception', error='{0}: {1}'.format(exc.__class__.__name__, exc),
                 traceback=traceback.format_exc())
            self.channel.basic_reject(delivery_tag=method.delivery_tag, requeue=False)

    # MessageProcessor and GenericApplication handlers
    def msg_quit(self, content, method):
        self.channel.stop_consuming()
        raise QuitRequested()

    def msg_restart(self, content, method):
        self.channel.stop_consuming()
        raise RestartRequested()

    def msg_join_group(self, content, method):
        group = content['parameters']['group_name']
        if group not in self.groups:
            self.groups.append(group)
            # 1.2.1 passed the uid dict where a name belongs; a Python 3 port passes its name
            # and flags (declaring it without auto_delete would be refused: 406).
            self.queue_bind(self.uid['name'], '{0}#{1}'.format(self.name, group), **self.uid['flags'])
        emit(event='joined', group=group, groups=self.groups)

    def msg_leave_group(self, content, method):
        group = content['parameters']['group_name']
        if group in self.groups:
            self.groups.remove(group)
            self.queue_unbind(self.uid['name'], '{0}#{1}'.format(self.name, group))
        emit(event='left', group=group, groups=self.groups)

    def rpc_ping(self, content, reply_func):
        reply_func(result_body(self.fingerprint))

    # demo handlers of this peer
    def msg_echo(self, content, method):
        emit(event='echo', parameters=content.get('parameters'))

    def rpc_echo(self, content, reply_func):
        reply_func(result_body(content.get('parameters')))

    def rpc_floats(self, content, reply_func):
        reply_func(result_body({'nan': float('nan'), 'inf': float('inf'), 'ninf': float('-inf'), 'one': 1.5}))

    def rpc_fail(self, content, reply_func):
        raise ValueError(str(content.get('parameters')))

    def rpc_error(self, content, reply_func):
        reply_func(result_error(str(content.get('parameters'))))

    def rpc_slow(self, content, reply_func):
        params = content.get('parameters') or {}
        time.sleep(float(params.get('seconds', 1)))
        reply_func(result_body(params.get('value')))

    def rpc_silent(self, content, reply_func):
        emit(event='silent')


# ---------------------------------------------------------------- the client

class Client(object):
    """Runs each stdin command on its own thread with its own producer (pika is not thread-safe)."""

    def __init__(self, name):
        self.fingerprint = fingerprint(name, 'application')
        self.idle = []
        self.lock = threading.Lock()

    def producer(self):
        with self.lock:
            if self.idle:
                return self.idle.pop()
        return Producer(self.fingerprint)

    def release(self, producer):
        with self.lock:
            self.idle.append(producer)

    def handle(self, command):
        cid = command.get('id')
        try:
            producer = self.producer()
        except Exception as exc:
            emit(id=cid, error='{0}: {1}'.format(exc.__class__.__name__, exc))
            return
        try:
            op = command['op']
            params = unmark(command.get('params', {}))
            if op == 'send':
                producer.message(command['key'], command['name'], params)
                emit(id=cid, sent=True)
            elif op == 'rpc':
                started = time.monotonic()
                result, raw, tries, queues, reply_props = producer.rpc(
                    command['key'], command['name'], params,
                    timeout=command.get('timeout'), max_retry=command.get('max_retry'))
                emit(id=cid, result=result, ok=result['content']['type'] == 'success',
                     raw=raw, tries=tries, reply_queues=queues, reply_properties=reply_props,
                     ms=round((time.monotonic() - started) * 1000))
            else:
                emit(id=cid, error='unknown op {0}'.format(op))
            self.release(producer)
        except Exception as exc:
            producer.close()
            emit(id=cid, error='{0}: {1}'.format(exc.__class__.__name__, exc), traceback=traceback.format_exc())

    def run(self):
        emit(event='ready', pid=os.getpid(), fingerprint=self.fingerprint)
        threads = []
        for line in sys.stdin:
            if not line.strip():
                continue
            command = json.loads(line)
            thread = threading.Thread(target=self.handle, args=(command,), daemon=True)
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()
        for producer in self.idle:
            producer.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='mode', required=True)
    app = sub.add_parser('app')
    app.add_argument('--name', required=True)
    app.add_argument('--host')
    app.add_argument('--group', action='append', default=[])
    client = sub.add_parser('client')
    client.add_argument('--name', default='python-client')
    args = parser.parse_args()
    if args.mode == 'app':
        try:
            application = Application(args.name, args.host, args.group)
        except pika.exceptions.ChannelClosedByBroker as exc:
            emit(event='declare-refused', code=exc.reply_code, text=exc.reply_text)
            sys.exit(1)
        application.run()
    else:
        Client(args.name).run()


if __name__ == '__main__':
    main()
