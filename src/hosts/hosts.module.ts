import { Module } from '@nestjs/common';
import { RedisModule } from '../redis/redis.module.js';
import { CodeHosts } from './code-hosts.js';

@Module({
  imports: [RedisModule],
  providers: [CodeHosts],
  exports: [CodeHosts],
})
export class HostsModule {}
