'''octoDNS provider for geosteer: zones become geosteer policy files.

The forward mapping (octoDNS records -> policy) is geosteer's own `geosteer import octodns`,
run on the desired zone, so the provider and the importer cannot drift apart; `populate`
reads a policy back into records (the reverse of that mapping) so that a second sync plans
no change.
'''

import json
import os
import subprocess
import tempfile
import urllib.request
from logging import getLogger

import yaml

from octodns.provider import ProviderException, SupportsException
from octodns.provider.base import BaseProvider
from octodns.record import Record

__version__ = '0.1.0'

# The pool `geosteer import octodns` gives a dynamic record's own values.
VALUES_POOL = 'record-values'
# octoDNS's health check defaults: a node check equal to them is not written back.
DEFAULT_CHECK = {'protocol': 'HTTPS', 'port': 443, 'path': '/_dns'}


class GeosteerProvider(BaseProvider):
    '''Writes one geosteer policy file per zone into `directory`.

    :param directory: where policy files are written (`<zone>.yaml`, atomically).
    :param nameservers: the zone's NS names, fully qualified (required).
    :param contact: the SOA contact (default `hostmaster.<zone>.`).
    :param admin: a geosteer admin URL to ask for a reload after a write.
    :param token_env: the environment variable holding the admin token.
    :param geosteer: the geosteer binary (default `geosteer` on the PATH).
    '''

    SUPPORTS_GEO = False
    SUPPORTS_DYNAMIC = True
    SUPPORTS_POOL_VALUE_STATUS = True
    SUPPORTS_DYNAMIC_SUBNETS = True
    SUPPORTS = {'A', 'AAAA', 'CNAME', 'TXT', 'MX', 'SRV', 'CAA', 'NS'}

    def __init__(
        self,
        id,
        directory,
        nameservers,
        contact=None,
        admin=None,
        token_env=None,
        geosteer='geosteer',
        *args,
        **kwargs,
    ):
        self.log = getLogger(f'GeosteerProvider[{id}]')
        super().__init__(id, *args, **kwargs)
        if not nameservers:
            raise ProviderException(f'{id}: nameservers is required')
        self.directory = directory
        self.nameservers = list(nameservers)
        self.contact = contact
        self.admin = admin
        self.token_env = token_env
        self.geosteer = geosteer

    # --- octoDNS records -> policy, through `geosteer import octodns` -----------------

    def _policy(self, zone):
        '''The policy for `zone`'s records, or the importer's errors raised.'''
        records = {}
        for record in zone.records:
            data = json.loads(json.dumps(record.data, default=str))
            data['type'] = record._type
            records.setdefault(record.name, []).append(data)
        with tempfile.NamedTemporaryFile('w', suffix='.yaml', delete=False) as f:
            yaml.safe_dump(records, f, default_flow_style=False, sort_keys=True)
            path = f.name
        try:
            argv = [
                self.geosteer,
                'import',
                'octodns',
                path,
                '--zone',
                zone.name.rstrip('.'),
                '--nameservers',
                ','.join(self.nameservers),
            ]
            if self.contact:
                argv += ['--contact', self.contact]
            done = subprocess.run(argv, capture_output=True, text=True)
        finally:
            os.unlink(path)
        if done.returncode != 0:
            problems = [
                line.split(': ', 1)[-1] for line in done.stderr.splitlines()
            ]
            raise SupportsException(
                f'{self.id}: {zone.decoded_name}: ' + '; '.join(problems)
            )
        return done.stdout

    def _process_desired_zone(self, desired):
        # What geosteer cannot express fails the plan, naming the record.
        self._policy(desired)
        return super()._process_desired_zone(desired)

    def _apply(self, plan):
        zone = plan.desired
        policy = self._policy(zone)
        os.makedirs(self.directory, exist_ok=True)
        target = os.path.join(self.directory, f'{zone.name.rstrip(".")}.yaml')
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix='.tmp')
        with os.fdopen(fd, 'w') as f:
            f.write(policy)
        os.replace(tmp, target)
        self.log.info('_apply: wrote %s', target)
        if self.admin:
            self._reload()

    def _reload(self):
        # The admin interface refuses a POST that looks like a browser's form (urllib sends
        # a form Content-Type with any body): X-Geosteer marks a deliberate client.
        request = urllib.request.Request(
            self.admin.rstrip('/') + '/reload',
            method='POST',
            headers={'X-Geosteer': '1'},
        )
        if self.token_env:
            token = os.environ.get(self.token_env, '')
            request.add_header('Authorization', f'Bearer {token}')
        with urllib.request.urlopen(request, timeout=30) as response:
            if response.status != 200:
                raise ProviderException(
                    f'{self.id}: reload answered {response.status}'
                )

    # --- policy -> octoDNS records ----------------------------------------------------

    def populate(self, zone, target=False, lenient=False):
        path = os.path.join(self.directory, f'{zone.name.rstrip(".")}.yaml')
        if not os.path.exists(path):
            return False
        with open(path) as f:
            policy = yaml.safe_load(f) or {}
        for name, sets in (policy.get('records') or {}).items():
            name = '' if name == '@' else name
            for written in sets:
                data = _static(written)
                record = Record.new(zone, name, data, source=self, lenient=lenient)
                zone.add_record(record, lenient=lenient)
        nodes = policy.get('nodes') or {}
        for name, steer in (policy.get('steer') or {}).items():
            name = '' if name == '@' else name
            data = _dynamic(steer, nodes)
            record = Record.new(zone, name, data, source=self, lenient=lenient)
            zone.add_record(record, lenient=lenient)
        return True


def _static(written):
    '''A policy record set as octoDNS record data.'''
    rtype = written['type']
    values = written.get('values')
    if values is None:
        values = [written['value']]
    if rtype == 'TXT':
        values = [v.replace(';', '\\;') for v in values]
    data = {'type': rtype, 'ttl': written.get('ttl', 3600)}
    if rtype == 'CNAME':
        data['value'] = values[0]
    else:
        data['values'] = values
    return data


def _dynamic(steer, nodes):
    '''A steered name written by `geosteer import octodns` as octoDNS record data.'''
    pools = {}
    values = []
    rtype = 'A'
    check = None
    for pool, body in (steer.get('pools') or {}).items():
        members = []
        for node_name in body.get('nodes', []):
            node = nodes[node_name]
            # An address, or {address, asn} for one on a carrier.
            address = node['addresses'][0]
            if isinstance(address, dict):
                address = address['address']
            if ':' in address:
                rtype = 'AAAA'
            member = {'value': address}
            if node.get('weight', 1) != 1:
                member['weight'] = node['weight']
            if node.get('status', 'obey') != 'obey':
                member['status'] = node['status']
            members.append(member)
            check = check or node.get('check')
        if pool == VALUES_POOL:
            values = [m['value'] for m in members]
            continue
        pools[pool] = {'values': members}
        fallback = body.get('fallback')
        if fallback and fallback != VALUES_POOL:
            pools[pool]['fallback'] = fallback
    rules = []
    for rule in steer.get('rules') or []:
        out = {'pool': rule['pool']}
        for key in ('geos', 'subnets'):
            if rule.get(key):
                out[key] = list(rule[key])
        rules.append(out)
    data = {
        'type': rtype,
        'ttl': steer.get('ttl', 3600),
        'values': values,
        'dynamic': {'pools': pools, 'rules': rules},
    }
    healthcheck = _healthcheck(check)
    if healthcheck:
        data['octodns'] = {'healthcheck': healthcheck}
    return data


def _healthcheck(check):
    '''A node check as octoDNS healthcheck settings (None for octoDNS's defaults).'''
    if not check:
        return None
    settings = {'protocol': check['type'].upper(), 'port': check.get('port')}
    if check.get('path'):
        settings['path'] = check['path']
    if check.get('host'):
        settings['host'] = check['host']
    if all(settings.get(k) == v for k, v in DEFAULT_CHECK.items()):
        return None
    return settings
