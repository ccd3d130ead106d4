import { Injectable } from '@nestjs/common';
import { Conflict } from '../common/errors.js';
import { PrismaService } from '../database/prisma.service.js';
import { Prisma } from '../generated/prisma/client.js';

export interface ProjectRecord {
  id: string;
  name: string;
  repositoryCount: number;
  createdAt: Date;
}

@Injectable()
export class ProjectsRepository {
  constructor(private readonly prisma: PrismaService) {}

  async create(tenantId: string, name: string): Promise<ProjectRecord> {
    try {
      const p = await this.prisma.project.create({ data: { tenantId, name } });
      return { id: p.id, name: p.name, repositoryCount: 0, createdAt: p.createdAt };
    } catch (e) {
      if (e instanceof Prisma.PrismaClientKnownRequestError && e.code === 'P2002') {
        throw new Conflict('PROJECT_EXISTS', `a project named "${name}" already exists`);
      }
      throw e;
    }
  }

  async list(tenantId: string): Promise<ProjectRecord[]> {
    const rows = await this.prisma.project.findMany({
      where: { tenantId },
      orderBy: { name: 'asc' },
      take: 1000,
      include: { _count: { select: { repositories: true } } },
    });
    return rows.map((p) => ({
      id: p.id,
      name: p.name,
      repositoryCount: p._count.repositories,
      createdAt: p.createdAt,
    }));
  }

  /** Deletes a project; its repositories stay, ungrouped. */
  async delete(tenantId: string, id: string): Promise<boolean> {
    const { count } = await this.prisma.project.deleteMany({ where: { tenantId, id } });
    return count > 0;
  }
}
