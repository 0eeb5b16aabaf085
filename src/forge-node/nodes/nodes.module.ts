import { Module } from '@nestjs/common';
import { NodeInfo } from './node-info.js';

/** Provides NodeInfo to ClusterModule.forRootAsync (which builds the membership record from it). */
@Module({ providers: [NodeInfo], exports: [NodeInfo] })
export class NodeInfoModule {}
